from keeper.cli.main import run

run()
