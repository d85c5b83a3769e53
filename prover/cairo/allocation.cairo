// The obsqra allocation model, proof mode (docs/allocation-program.md is the spec).
//
// Reads the router inputs through a hint, checks every input range, computes the risk
// scores, the allocation with cap/redistribute, checks diversification, computes the
// inputs commitment, and writes the public output of the spec's section 4.
//
// Trust model: hints only *propose* values (quotients, comparison outcomes, limbs);
// the program checks each one with field equations and range checks, so a prover that
// changes a hint can only make the run fail, never change the output. Infeasible
// constraints and out-of-range inputs make the run fail, so a proof exists only for
// valid inputs.
//
// Range checks and the trace-length floor (why n_steps is 4096 on `small`):
// cairo-run raises n_steps until the range-check units of the trace can fill every
// value between rc_min and rc_max (CairoRunner.check_range_check_usage). On `small`
// each step has 16 units, 3 used by the instruction offsets, so
//     n_steps * 13 >= (rc_max - rc_min) + 8 * (range-check cells used).
// The instruction offsets are biased by 2^15 (this program's reach 2^15 + 22 = 32790,
// rc_max); every range-checked value is split into eight 16-bit limbs, and the upper
// limbs of a small value are 0, so rc_min = 0 as soon as one range check is used: the
// floor is 32790 / 13 ~ 2523 steps, i.e. n_steps 4096 (the floor the 190-step sample hit).
// Measured (bench/bench_trace.py): 3 protocols ~2,500-3,000 steps -> 4096; 8 -> 8192;
// 16 -> 16384 (more with several cap rounds).
// A limb near 2^16 (what `assert_nn` on a value like 40000 or 2^128 - 5 produces) would
// push rc_max to 65535 and n_steps to 8192. So this program never range-checks a value
// with a limb >= 2^15: values wider than 15 bits are split by a hint into 15-bit limbs
// (nn2/nn3 below) and each limb is range-checked. The floor then stays at 4096 for
// every valid input as long as the program stays under 4096 steps and 512 range-check
// cells (the `small` range_check ratio is 8 steps per cell).
%builtins output pedersen range_check ecdsa

from starkware.cairo.common.alloc import alloc
from starkware.cairo.common.cairo_builtins import HashBuiltin
from starkware.cairo.common.hash import hash2

const BPS = 10000;
const MAX_PROTOCOLS = 16;
const FIELDS_PER_PROTOCOL = 6;
const N_PARAMS = 12;
const MAX_VALUE = 100000;  // bound of age_days, apy_bps and every parameter
const DIVERSIFIED_BPS = 1000;
const LIMB = 0x8000;  // 2^15

// --- Non-negativity checks -------------------------------------------------------------
// nn1(x): x in [0, 2^128) (one range-check cell; an honest x < 2^15 keeps its limb small).
// nn2(x): x = l0 + 2^15 * l1 with l0, l1 in [0, 2^128), so x in [0, 2^144). Honest x < 2^30.
// nn3(x): three limbs, x in [0, 2^159). Honest x < 2^45.
// Every comparison below is on values < 2^50, so "b - a passes nn3" means b >= a: a
// negative difference is a field element near p ~ 2^251, far above 2^159.

func nn1{range_check_ptr}(x: felt) {
    assert [range_check_ptr] = x;
    let range_check_ptr = range_check_ptr + 1;
    return ();
}

func nn2{range_check_ptr}(x: felt) {
    %{
        memory[ids.range_check_ptr] = ids.x % 0x8000
        memory[ids.range_check_ptr + 1] = ids.x // 0x8000
    %}
    assert x = [range_check_ptr] + [range_check_ptr + 1] * LIMB;
    let range_check_ptr = range_check_ptr + 2;
    return ();
}

func nn3{range_check_ptr}(x: felt) {
    %{
        memory[ids.range_check_ptr] = ids.x % 0x8000
        memory[ids.range_check_ptr + 1] = (ids.x // 0x8000) % 0x8000
        memory[ids.range_check_ptr + 2] = ids.x // 0x40000000
    %}
    assert x = [range_check_ptr] + ([range_check_ptr + 1] + [range_check_ptr + 2] * LIMB) * LIMB;
    let range_check_ptr = range_check_ptr + 3;
    return ();
}

// --- Verified floor divisions: num = q * den + r, 0 <= r < den -------------------------
// q and r pass nn checks (< 2^159) and den < 2^35, so q * den + r < p: the field equation
// is the integer equation and q is the floor quotient.

// num < 2^30, q < 2^17.
func div_bps{range_check_ptr}(num: felt) -> (q: felt) {
    alloc_locals;
    local q;
    local r;
    %{ ids.q, ids.r = divmod(ids.num, 10000) %}
    assert num = q * BPS + r;
    nn2(q);
    nn1(r);
    nn1(BPS - 1 - r);
    return (q=q);
}

// den <= 100001, q < 2^30.
func div_q2_r2{range_check_ptr}(num: felt, den: felt) -> (q: felt) {
    alloc_locals;
    local q;
    local r;
    %{ ids.q, ids.r = divmod(ids.num, ids.den) %}
    assert num = q * den + r;
    nn2(q);
    nn2(r);
    nn2(den - 1 - r);
    return (q=q);
}

// den <= 100000, q < 2^45.
func div_q3_r2{range_check_ptr}(num: felt, den: felt) -> (q: felt) {
    alloc_locals;
    local q;
    local r;
    %{ ids.q, ids.r = divmod(ids.num, ids.den) %}
    assert num = q * den + r;
    nn3(q);
    nn2(r);
    nn2(den - 1 - r);
    return (q=q);
}

// den < 2^45, q <= 10000.
func div_q1_r3{range_check_ptr}(num: felt, den: felt) -> (q: felt) {
    alloc_locals;
    local q;
    local r;
    %{ ids.q, ids.r = divmod(ids.num, ids.den) %}
    assert num = q * den + r;
    nn1(q);
    nn3(r);
    nn3(den - 1 - r);
    return (q=q);
}

// --- Inputs ------------------------------------------------------------------------------

// Parameters (spec section 1): each <= 100000, audit_den >= 1, age_cap_days >= 1,
// risk_ceiling >= risk_floor.
func validate_params{range_check_ptr}(params: felt*, i: felt) {
    if (i == N_PARAMS) {
        nn2(params[7] - 1);
        nn2(params[8] - 1);
        nn2(params[11] - params[10]);
        return ();
    }
    nn2(params[i]);
    nn2(MAX_VALUE - params[i]);
    return validate_params(params, i + 1);
}

// One protocol's fields (spec section 1); liquidity_tier is checked by liq_penalty.
func validate_protocol{range_check_ptr}(p: felt*) {
    nn1(p[0]);
    nn1(BPS - p[0]);
    nn1(p[1]);
    nn1(BPS - p[1]);
    nn1(p[3]);
    nn1(100 - p[3]);
    nn2(p[4]);
    nn2(MAX_VALUE - p[4]);
    nn2(p[5]);
    nn2(MAX_VALUE - p[5]);
    return ();
}

// --- Risk --------------------------------------------------------------------------------

// liq_penalty[liq]; fails unless liq is 0, 1, 2 or 3.
func liq_penalty(liq: felt, params: felt*) -> (penalty: felt) {
    if (liq == 0) {
        return (penalty=params[2]);
    }
    if (liq == 1) {
        return (penalty=params[3]);
    }
    if (liq == 2) {
        return (penalty=params[4]);
    }
    assert liq = 3;
    return (penalty=params[5]);
}

func age_term{range_check_ptr}(age: felt, cap: felt, penalty: felt) -> (term: felt) {
    alloc_locals;
    local young;
    %{ ids.young = 1 if ids.age < ids.cap else 0 %}
    if (young == 0) {
        nn2(age - cap);
        return (term=0);
    }
    nn2(cap - 1 - age);
    let (term) = div_q3_r2((cap - age) * penalty, cap);
    return (term=term);
}

// clamp(raw, lo, hi) with lo <= hi (validated); raw < 2^35.
func clamp{range_check_ptr}(raw: felt, lo: felt, hi: felt) -> (value: felt) {
    alloc_locals;
    local region;
    %{ ids.region = 0 if ids.raw < ids.lo else (2 if ids.raw > ids.hi else 1) %}
    if (region == 0) {
        nn2(lo - 1 - raw);
        return (value=lo);
    }
    if (region == 2) {
        nn3(raw - hi - 1);
        return (value=hi);
    }
    nn3(raw - lo);
    nn2(hi - raw);
    return (value=raw);
}

func protocol_risk{range_check_ptr}(p: felt*, params: felt*) -> (risk: felt) {
    alloc_locals;
    let (local t_util) = div_bps(p[0] * params[0]);
    let (local t_vol) = div_bps(p[1] * params[1]);
    let (local t_liq) = liq_penalty(p[2], params);
    let (local t_audit) = div_q2_r2((100 - p[3]) * params[6], params[7]);
    let (t_age) = age_term(p[4], params[8], params[9]);
    let (risk) = clamp(t_util + t_vol + t_liq + t_audit + t_age, params[10], params[11]);
    return (risk=risk);
}

// Fills risks[] and scores[] (score = apy * 10000 / (risk + 1)); returns sum(score).
func risks_and_scores{range_check_ptr}(
    p: felt*, params: felt*, n: felt, risks: felt*, scores: felt*, total: felt
) -> (total: felt) {
    alloc_locals;
    if (n == 0) {
        return (total=total);
    }
    validate_protocol(p);
    let (local risk) = protocol_risk(p, params);
    assert risks[0] = risk;
    let (score) = div_q2_r2(p[5] * BPS, risk + 1);
    assert scores[0] = score;
    return risks_and_scores(
        p + FIELDS_PER_PROTOCOL, params, n - 1, risks + 1, scores + 1, total + score
    );
}

// --- Allocation --------------------------------------------------------------------------

func fill(dst: felt*, n: felt, value: felt) {
    if (n == 0) {
        return ();
    }
    assert dst[0] = value;
    return fill(dst + 1, n - 1, value);
}

// alloc_i = weight_i * 10000 / total; returns sum(alloc).
func base_alloc{range_check_ptr}(weights: felt*, total: felt, n: felt, out: felt*, acc: felt) -> (
    sum: felt
) {
    if (n == 0) {
        return (sum=acc);
    }
    let (q) = div_q1_r3(weights[0] * BPS, total);
    assert out[0] = q;
    return base_alloc(weights + 1, total, n - 1, out + 1, acc + q);
}

// Index of the largest weight among the uncapped i (lowest index on ties), -1 if none.
// Weights < 2^30.
func argmax{range_check_ptr}(
    weights: felt*, capped: felt*, i: felt, n: felt, best_idx: felt, best_w: felt
) -> (idx: felt) {
    alloc_locals;
    if (i == n) {
        return (idx=best_idx);
    }
    if (capped[i] != 0) {
        return argmax(weights, capped, i + 1, n, best_idx, best_w);
    }
    local w = weights[i];
    if (best_idx == -1) {
        return argmax(weights, capped, i + 1, n, i, w);
    }
    local bigger;
    %{ ids.bigger = 1 if ids.w > ids.best_w else 0 %}
    if (bigger != 0) {
        nn2(w - best_w - 1);
        return argmax(weights, capped, i + 1, n, i, w);
    }
    nn2(best_w - w);
    return argmax(weights, capped, i + 1, n, best_idx, best_w);
}

// dst = src with extra added at index k.
func add_at(src: felt*, n: felt, i: felt, k: felt, extra: felt, dst: felt*) {
    if (i == n) {
        return ();
    }
    if (i == k) {
        assert dst[i] = src[i] + extra;
        return add_at(src, n, i + 1, k, extra, dst);
    }
    assert dst[i] = src[i];
    return add_at(src, n, i + 1, k, extra, dst);
}

// Caps every uncapped alloc_i > max_single; returns (excess, number newly capped).
func cap_pass{range_check_ptr}(
    cur: felt*,
    capped: felt*,
    max_single: felt,
    i: felt,
    n: felt,
    out: felt*,
    out_capped: felt*,
    excess: felt,
    n_over: felt,
) -> (excess: felt, n_over: felt) {
    alloc_locals;
    if (i == n) {
        return (excess=excess, n_over=n_over);
    }
    local a = cur[i];
    if (capped[i] != 0) {
        assert out[i] = a;
        assert out_capped[i] = 1;
        return cap_pass(cur, capped, max_single, i + 1, n, out, out_capped, excess, n_over);
    }
    local over;
    %{ ids.over = 1 if ids.a > ids.max_single else 0 %}
    if (over != 0) {
        nn1(a - max_single - 1);
        assert out[i] = max_single;
        assert out_capped[i] = 1;
        return cap_pass(
            cur, capped, max_single, i + 1, n, out, out_capped, excess + a - max_single, n_over + 1
        );
    }
    nn1(max_single - a);
    assert out[i] = a;
    assert out_capped[i] = 0;
    return cap_pass(cur, capped, max_single, i + 1, n, out, out_capped, excess, n_over);
}

// (sum of scores, count) over the uncapped protocols.
func sum_uncapped(scores: felt*, capped: felt*, n: felt, total: felt, count: felt) -> (
    total: felt, count: felt
) {
    if (n == 0) {
        return (total=total, count=count);
    }
    if (capped[0] != 0) {
        return sum_uncapped(scores + 1, capped + 1, n - 1, total, count);
    }
    return sum_uncapped(scores + 1, capped + 1, n - 1, total + scores[0], count + 1);
}

// Receivers' weights: their scores, or 1 each when their scores sum to 0.
func pick_weights(scores: felt*, ones: felt*, total: felt, count: felt) -> (
    weights: felt*, total: felt
) {
    if (total == 0) {
        return (weights=ones, total=count);
    }
    return (weights=scores, total=total);
}

// out_i = cur_i + excess * weight_i / total for uncapped i; returns sum of the additions.
func distribute{range_check_ptr}(
    cur: felt*,
    capped: felt*,
    weights: felt*,
    total: felt,
    excess: felt,
    n: felt,
    out: felt*,
    added: felt,
) -> (added: felt) {
    if (n == 0) {
        return (added=added);
    }
    if (capped[0] != 0) {
        assert out[0] = cur[0];
        return distribute(cur + 1, capped + 1, weights + 1, total, excess, n - 1, out + 1, added);
    }
    let (q) = div_q1_r3(excess * weights[0], total);
    assert out[0] = cur[0] + q;
    return distribute(cur + 1, capped + 1, weights + 1, total, excess, n - 1, out + 1, added + q);
}

// Cap and redistribute (spec section 3) until no allocation exceeds max_single.
func cap_rounds{range_check_ptr}(
    cur: felt*, capped: felt*, scores: felt*, ones: felt*, n: felt, max_single: felt
) -> (final: felt*) {
    alloc_locals;
    let (local capped_alloc: felt*) = alloc();
    let (local now_capped: felt*) = alloc();
    let (local excess, n_over) = cap_pass(
        cur, capped, max_single, 0, n, capped_alloc, now_capped, 0, 0
    );
    if (n_over == 0) {
        return (final=cur);
    }
    // Infeasible when n * max_single < 10000: the run fails here.
    nn2(n * max_single - BPS);
    let (receivers_score, receivers) = sum_uncapped(scores, now_capped, n, 0, 0);
    let (local weights: felt*, local total) = pick_weights(
        scores, ones, receivers_score, receivers
    );
    let (local spread: felt*) = alloc();
    let (local added) = distribute(
        capped_alloc, now_capped, weights, total, excess, n, spread, 0
    );
    let (k) = argmax(weights, now_capped, 0, n, -1, 0);
    let (next: felt*) = alloc();
    add_at(spread, n, 0, k, excess - added, next);
    return cap_rounds(next, now_capped, scores, ones, n, max_single);
}

func count_diversified{range_check_ptr}(allocs: felt*, n: felt, count: felt) -> (count: felt) {
    alloc_locals;
    if (n == 0) {
        return (count=count);
    }
    local a = allocs[0];
    local big;
    %{ ids.big = 1 if ids.a >= 1000 else 0 %}
    if (big != 0) {
        nn1(a - DIVERSIFIED_BPS);
        return count_diversified(allocs + 1, n - 1, count + 1);
    }
    nn1(DIVERSIFIED_BPS - 1 - a);
    return count_diversified(allocs + 1, n - 1, count);
}

func array_sum(values: felt*, n: felt, acc: felt) -> (sum: felt) {
    if (n == 0) {
        return (sum=acc);
    }
    return array_sum(values + 1, n - 1, acc + values[0]);
}

// --- Commitment and output ---------------------------------------------------------------

// Starknet compute_hash_on_elements: h = 0; h = pedersen(h, e) for each e; pedersen(h, len).
func hash_on_elements{pedersen_ptr: HashBuiltin*}(data: felt*, length: felt) -> (hash: felt) {
    let (h) = hash_chain(data, length, 0);
    let (hash) = hash2{hash_ptr=pedersen_ptr}(h, length);
    return (hash=hash);
}

func hash_chain{pedersen_ptr: HashBuiltin*}(data: felt*, length: felt, acc: felt) -> (
    hash: felt
) {
    if (length == 0) {
        return (hash=acc);
    }
    assert pedersen_ptr.x = acc;
    assert pedersen_ptr.y = data[0];
    let h = pedersen_ptr.result;
    let pedersen_ptr = pedersen_ptr + HashBuiltin.SIZE;
    return hash_chain(data + 1, length - 1, h);
}

func write_array{output_ptr: felt*}(values: felt*, n: felt) {
    if (n == 0) {
        return ();
    }
    assert output_ptr[0] = values[0];
    let output_ptr = output_ptr + 1;
    return write_array(values + 1, n - 1);
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
    nn1(n - 1);
    nn1(MAX_PROTOCOLS - n);
    nn1(max_single - 1);
    nn1(BPS - max_single);
    nn1(min_diversification);
    nn1(MAX_PROTOCOLS - min_diversification);
    local protocols: felt* = elements + 1;
    local params: felt* = elements + 1 + n * FIELDS_PER_PROTOCOL;
    validate_params(params, 0);

    let (local risks: felt*) = alloc();
    let (local scores: felt*) = alloc();
    let (local score_sum) = risks_and_scores(protocols, params, n, risks, scores, 0);

    let (local ones: felt*) = alloc();
    fill(ones, n, 1);
    let (local no_caps: felt*) = alloc();
    fill(no_caps, n, 0);
    let (local weights: felt*, local total) = pick_weights(scores, ones, score_sum, n);

    let (local base: felt*) = alloc();
    let (local base_sum) = base_alloc(weights, total, n, base, 0);
    let (k) = argmax(weights, no_caps, 0, n, -1, 0);
    let (local rounded: felt*) = alloc();
    add_at(base, n, 0, k, BPS - base_sum, rounded);

    let (local allocation: felt*) = cap_rounds(rounded, no_caps, scores, ones, n, max_single);

    let (diversified) = count_diversified(allocation, n, 0);
    // Fewer than min_diversification protocols at >= 1000 bps: the run fails here.
    nn1(diversified - min_diversification);
    let (allocated) = array_sum(allocation, n, 0);
    assert allocated = BPS;

    let (commitment) = hash_on_elements(elements, 1 + n * FIELDS_PER_PROTOCOL + N_PARAMS);

    assert output_ptr[0] = router;
    assert output_ptr[1] = epoch;
    assert output_ptr[2] = commitment;
    assert output_ptr[3] = max_single;
    assert output_ptr[4] = min_diversification;
    assert output_ptr[5] = n;
    let output_ptr = output_ptr + 6;
    write_array(allocation, n);
    write_array(risks, n);
    return ();
}
