from keeper.cli import run

run()
