// The obsqra allocation model, proof mode (docs/allocation-program.md is the spec).
//
// Reads the router inputs through a hint, checks every input range, computes the risk
// scores, the allocation with cap/redistribute, checks diversification, computes the
// inputs commitment, and writes the public output of the spec's section 4.
//
// Trust model: hints only *propose* values (quotients, comparison outcomes, limbs, the
// index that takes a remainder); the program checks each one with field equations and
// range checks, so a prover that changes a hint can only make the run fail, never change
// the output. Infeasible constraints and out-of-range inputs make the run fail, so a
// proof exists only for valid inputs.
//
// Size: the bytecode is public memory, paid on every on-chain verification (28-40 k L2
// gas per word, docs/verification-cost.md), so the program is written small: one comparison
// (lt), one bounds check per width, one division per width, and one pass per cap round
// that spreads the excess, gives the remainder and applies the cap.
//
// Range checks and the trace-length floor (why n_steps is 4096 on `small`):
// cairo-run raises n_steps until the range-check units of the trace can fill every
// value between rc_min and rc_max (CairoRunner.check_range_check_usage). On `small`
// each step has 16 units, 3 used by the instruction offsets, so
//     n_steps * 13 >= (rc_max - rc_min) + 8 * (range-check cells used).
// The instruction offsets are biased by 2^15 (this program's reach 2^15 + 12 = 32780,
// rc_max); every range-checked value is split into eight 16-bit limbs, and the upper
// limbs of a small value are 0, so rc_min = 0 as soon as one range check is used: the
// floor is 32780 / 13 ~ 2522 steps, i.e. n_steps 4096.
// A limb near 2^16 (what a plain range check of 40000 or of 2^128 - 5 produces) would
// push rc_max to 65535 and n_steps to 8192. So this program never range-checks a value
// with a limb >= 2^15: a cell holds either a value < 2^15 (bounded_small) or one 15-bit
// limb of a wider value, split by a hint (LIMB below). The floor then stays at 4096 for
// every valid input as long as the program stays under 4096 steps and 512 range-check
// cells (the `small` range_check ratio is 8 steps per cell). Measured with
// bench/bench_trace.py and on random inputs against the previous program: fewer steps
// and never a longer trace (3 protocols ~2,100-2,600 steps; the 4-protocol bench and
// cap-cascade inputs, 8,192 before, now fit 4096 too).
//
// Widths: two limbs bound a value below 2^144, three below 2^159; every value compared
// here is an integer < 2^50, so "b - a passes a limb check" means b >= a: a negative
// difference is a field element near p ~ 2^251.
%builtins output pedersen range_check ecdsa

from starkware.cairo.common.alloc import alloc
from starkware.cairo.common.cairo_builtins import HashBuiltin

const BPS = 10000;
const MAX_VALUE = 100000;  // bound of age_days, apy_bps and every parameter
const LIMB = 0x8000;  // 2^15

// --- Checks ------------------------------------------------------------------------------

// x >= 0, two limbs (honest x < 2^30).
func nn{range_check_ptr}(x: felt) {
    %{
        limbs = [ids.x % 0x8000, ids.x // 0x8000]
        for i, v in enumerate(limbs): memory[ids.range_check_ptr + i] = v
    %}
    assert x = [range_check_ptr] + [range_check_ptr + 1] * LIMB;
    let range_check_ptr = range_check_ptr + 2;
    return ();
}

// 0 <= x <= bound for a bound < 2^15: one cell each for x and bound - x.
func bounded_small{range_check_ptr}(x: felt, bound: felt) {
    assert [range_check_ptr] = x;
    assert [range_check_ptr + 1] = bound - x;
    let range_check_ptr = range_check_ptr + 2;
    return ();
}

// 0 <= x <= bound: x and bound - x in two limbs each (honest values < 2^30).
func bounded{range_check_ptr}(x: felt, bound: felt) {
    %{
        limbs = [
            ids.x % 0x8000, ids.x // 0x8000, (ids.bound - ids.x) % 0x8000, (ids.bound - ids.x) // 0x8000
        ]
        for i, v in enumerate(limbs): memory[ids.range_check_ptr + i] = v
    %}
    assert x = [range_check_ptr] + [range_check_ptr + 1] * LIMB;
    assert bound - x = [range_check_ptr + 2] + [range_check_ptr + 3] * LIMB;
    let range_check_ptr = range_check_ptr + 4;
    return ();
}

// 1 if a < b else 0 (a, b < 2^30 apart). The hint proposes the bit; the program checks it
// is 0 or 1 and that b - a - 1 (bit 1) or a - b (bit 0) is non-negative, in two limbs.
func lt{range_check_ptr}(a: felt, b: felt) -> (bit: felt) {
    alloc_locals;
    local bit;
    %{
        ids.bit = 1 if ids.a < ids.b else 0
        d = ids.b - ids.a - 1 if ids.bit else ids.a - ids.b
        limbs = [d % 0x8000, d // 0x8000]
        for i, v in enumerate(limbs): memory[ids.range_check_ptr + i] = v
    %}
    assert bit * bit = bit;
    assert a - b + bit * (2 * (b - a) - 1) = [range_check_ptr] + [range_check_ptr + 1] * LIMB;
    let range_check_ptr = range_check_ptr + 2;
    return (bit=bit);
}

// Floor division: num = q * den + r with 0 <= r < den; q, r and den - 1 - r in two limbs
// (honest q, den < 2^30). q < 2^144 and den < 2^35, so q * den + r < p: the field
// equation is the integer equation and q is the floor quotient.
func div{range_check_ptr}(num: felt, den: felt) -> (q: felt) {
    alloc_locals;
    %{
        q, r = divmod(ids.num, ids.den)
        s = ids.den - 1 - r
        limbs = [
            q % 0x8000, q // 0x8000, r % 0x8000, r // 0x8000, s % 0x8000, s // 0x8000
        ]
        for i, v in enumerate(limbs): memory[ids.range_check_ptr + i] = v
    %}
    local q = [range_check_ptr] + [range_check_ptr + 1] * LIMB;
    local r = [range_check_ptr + 2] + [range_check_ptr + 3] * LIMB;
    assert num = q * den + r;
    assert den - 1 - r = [range_check_ptr + 4] + [range_check_ptr + 5] * LIMB;
    let range_check_ptr = range_check_ptr + 6;
    return (q=q);
}

// The same with r and den - 1 - r in three limbs: den is a sum of up to 16 scores
// (< 2^34), q <= 10000.
func div_wide{range_check_ptr}(num: felt, den: felt) -> (q: felt) {
    alloc_locals;
    %{
        q, r = divmod(ids.num, ids.den)
        s = ids.den - 1 - r
        limbs = [
            q % 0x8000, q // 0x8000,
            r % 0x8000, r // 0x8000 % 0x8000, r // 0x40000000,
            s % 0x8000, s // 0x8000 % 0x8000, s // 0x40000000,
        ]
        for i, v in enumerate(limbs): memory[ids.range_check_ptr + i] = v
    %}
    local q = [range_check_ptr] + [range_check_ptr + 1] * LIMB;
    local r = [range_check_ptr + 2] + ([range_check_ptr + 3] + [range_check_ptr + 4] * LIMB) * LIMB;
    assert num = q * den + r;
    assert den - 1 - r = [range_check_ptr + 5] + (
        [range_check_ptr + 6] + [range_check_ptr + 7] * LIMB
    ) * LIMB;
    let range_check_ptr = range_check_ptr + 8;
    return (q=q);
}

// --- Inputs and risk -----------------------------------------------------------------------

// Every parameter <= 100000 (spec section 1; the other parameter rules are in main).
func validate_params{range_check_ptr}(params: felt*, n: felt) {
    if (n == 0) {
        return ();
    }
    bounded(params[0], MAX_VALUE);
    return validate_params(params + 1, n - 1);
}

// Checks each protocol's fields (spec section 1), writes risk_i to risks[] and
// score_i = apy_i * 10000 / (risk_i + 1) to scores[]; returns sum(score).
func risks_and_scores{range_check_ptr}(
    p: felt*, params: felt*, n: felt, risks: felt*, scores: felt*
) -> (total: felt) {
    alloc_locals;
    if (n == 0) {
        return (total=0);
    }
    bounded_small(p[0], BPS);
    bounded_small(p[1], BPS);
    bounded_small(p[2], 3);
    bounded_small(p[3], 100);
    bounded(p[4], MAX_VALUE);
    bounded(p[5], MAX_VALUE);
    let (local t_util) = div(p[0] * params[0], BPS);
    let (local t_vol) = div(p[1] * params[1], BPS);
    let (local t_audit) = div((100 - p[3]) * params[6], params[7]);
    // Age term: (cap - age) * penalty / cap while age < cap, else 0 (numerator 0).
    let (young) = lt(p[4], params[8]);
    let (local t_age) = div(young * (params[8] - p[4]) * params[9], params[8]);
    // liq_penalty[liq] is params[2 + liq], liq checked in 0..3 above.
    local raw = t_util + t_vol + params[2 + p[2]] + t_audit + t_age;
    // clamp(raw, risk_floor, risk_ceiling); floor <= ceiling is checked in main.
    let (local below) = lt(raw, params[10]);
    let (above) = lt(params[11], raw);
    local risk = raw + below * (params[10] - raw) + above * (params[11] - raw);
    assert risks[0] = risk;
    let (score) = div(p[5] * BPS, risk + 1);
    assert scores[0] = score;
    let (total) = risks_and_scores(p + 6, params, n - 1, risks + 1, scores + 1);
    return (total=total + score);
}

// --- Allocation (spec section 3) ------------------------------------------------------------

func fill_zeros(dst: felt*, n: felt) {
    if (n == 0) {
        return ();
    }
    assert dst[0] = 0;
    return fill_zeros(dst + 1, n - 1);
}

// One round, one pass: alloc_i = cur_i + excess * w_i / total (w_i = score_i + bump) for
// the uncapped i, plus the remainder at k, the uncapped index with the largest weight wk
// (lowest index on ties); then the cap: alloc_i > max_single becomes max_single, capped.
// Capped protocols are copied. The hint marks k (is_k, a 0/1 value); `before` is 1 up to
// k and 0 after it and must end at 0, so exactly one uncapped index is marked; w_k = wk,
// w_i < wk before k and w_i <= wk after k leave the hint (and the hinted wk) one choice.
// The remainder excess - sum(shares) is known once the recursion returns, so each
// protocol's allocation is written after its recursive call.
// Returns (sum of the shares, excess cut by the cap, sum and count of uncapped scores).
func spread{range_check_ptr}(
    cur: felt*,
    capped: felt*,
    scores: felt*,
    bump: felt,
    total: felt,
    excess: felt,
    wk: felt,
    before: felt,
    max_single: felt,
    n: felt,
    out: felt*,
    out_capped: felt*,
    acc: felt,
) -> (added: felt, cut: felt, t: felt, count: felt) {
    alloc_locals;
    if (n == 0) {
        assert before = 0;
        return (added=acc, cut=0, t=0, count=0);
    }
    if (capped[0] != 0) {
        assert out[0] = cur[0];
        assert out_capped[0] = 1;
        return spread(
            cur + 1,
            capped + 1,
            scores + 1,
            bump,
            total,
            excess,
            wk,
            before,
            max_single,
            n - 1,
            out + 1,
            out_capped + 1,
            acc,
        );
    }
    local score = scores[0];
    local w = score + bump;
    let (local q) = div_wide(excess * w, total);
    local is_k;
    %{ ids.is_k = 1 if ids.before == 1 and ids.w == ids.wk else 0 %}
    assert is_k * is_k = is_k;
    assert is_k * (w - wk) = 0;
    local after = before - is_k;
    nn(wk - w - after);
    let (local added, cut, t, count) = spread(
        cur + 1,
        capped + 1,
        scores + 1,
        bump,
        total,
        excess,
        wk,
        after,
        max_single,
        n - 1,
        out + 1,
        out_capped + 1,
        acc + q,
    );
    local a = cur[0] + q + is_k * (excess - added);
    let (over) = lt(max_single, a);
    local c = over * (a - max_single);
    assert out[0] = a - c;
    assert out_capped[0] = over;
    return (added=added, cut=cut + c, t=t + score - score * over, count=count + 1 - over);
}

// Spreads `excess` over the uncapped protocols (weights: their scores, or 1 each when
// those sum to 0) and caps, until the cap cuts nothing. The first call spreads 10000
// over every protocol (cur = capped = 0): the base allocation and its rounding.
func cap_rounds{range_check_ptr}(
    cur: felt*,
    capped: felt*,
    scores: felt*,
    t: felt,
    count: felt,
    excess: felt,
    n: felt,
    max_single: felt,
) -> (final: felt*) {
    alloc_locals;
    local bump;
    local total;
    if (t == 0) {
        bump = 1;
        total = count;
    } else {
        bump = 0;
        total = t;
    }
    local wk;
    %{
        ids.wk = max(
            memory[ids.scores + i] + ids.bump for i in range(ids.n) if memory[ids.capped + i] == 0
        )
    %}
    let (local next: felt*) = alloc();
    let (local next_capped: felt*) = alloc();
    let (_, cut, t, count) = spread(
        cur, capped, scores, bump, total, excess, wk, 1, max_single, n, next, next_capped, 0
    );
    if (cut == 0) {
        return (final=next);
    }
    // Infeasible when n * max_single < 10000: the run fails here.
    nn(n * max_single - BPS);
    return cap_rounds(next, next_capped, scores, t, count, cut, n, max_single);
}

// Writes the allocation to out; returns (count of alloc_i >= 1000, sum of alloc_i).
func finish{range_check_ptr}(allocs: felt*, n: felt, out: felt*) -> (count: felt, sum: felt) {
    alloc_locals;
    if (n == 0) {
        return (count=0, sum=0);
    }
    local a = allocs[0];
    assert out[0] = a;
    let (small) = lt(a, 1000);
    let (count, sum) = finish(allocs + 1, n - 1, out + 1);
    return (count=count + 1 - small, sum=sum + a);
}

// --- Commitment and output ---------------------------------------------------------------

// h = 0; h = pedersen(h, e) for each e: with the length appended to the data, this is
// Starknet's compute_hash_on_elements.
func hash_chain{pedersen_ptr: HashBuiltin*}(data: felt*, length: felt, acc: felt) -> (hash: felt) {
    if (length == 0) {
        return (hash=acc);
    }
    assert pedersen_ptr.x = acc;
    assert pedersen_ptr.y = data[0];
    let h = pedersen_ptr.result;
    let pedersen_ptr = pedersen_ptr + HashBuiltin.SIZE;
    return hash_chain(data + 1, length - 1, h);
}

func main{output_ptr: felt*, pedersen_ptr: HashBuiltin*, range_check_ptr, ecdsa_ptr}() {
    alloc_locals;
    local router;
    local epoch;
    local elements: felt*;
    local max_single;
    local min_diversification;
    %{
        ids.router = program_input["router"]
        ids.epoch = program_input["epoch"]
        ids.elements = segments.gen_arg(program_input["elements"])
        ids.max_single = program_input["max_single_bps"]
        ids.min_diversification = program_input["min_diversification"]
    %}
    // elements = [n, 6 fields per protocol, 12 params] (spec section 2).
    local n = elements[0];
    bounded_small(n - 1, 15);
    bounded_small(max_single - 1, BPS - 1);
    bounded_small(min_diversification, 16);
    local params: felt* = elements + 1 + n * 6;
    validate_params(params, 12);
    nn(params[7] - 1);  // audit_den >= 1
    nn(params[8] - 1);  // age_cap_days >= 1
    nn(params[11] - params[10]);  // risk_ceiling >= risk_floor

    // Risks go straight to the output (spec section 4: indices 6 + n .. 6 + 2n - 1).
    let (local scores: felt*) = alloc();
    let (local score_sum) = risks_and_scores(elements + 1, params, n, output_ptr + 6 + n, scores);
    let (local zeros: felt*) = alloc();
    fill_zeros(zeros, n);
    let (allocation) = cap_rounds(zeros, zeros, scores, score_sum, n, BPS, n, max_single);
    let (diversified, allocated) = finish(allocation, n, output_ptr + 6);
    // Fewer than min_diversification protocols at >= 1000 bps: the run fails here.
    nn(diversified - min_diversification);
    assert allocated = BPS;

    // The commitment hashes the elements, then their count: the count goes in the cell
    // after them (a prover-supplied value there makes this assert fail).
    local length = 13 + n * 6;
    assert elements[length] = length;
    let (commitment) = hash_chain(elements, length + 1, 0);

    assert output_ptr[0] = router;
    assert output_ptr[1] = epoch;
    assert output_ptr[2] = commitment;
    assert output_ptr[3] = max_single;
    assert output_ptr[4] = min_diversification;
    assert output_ptr[5] = n;
    let output_ptr = output_ptr + 6 + 2 * n;
    return ();
}
