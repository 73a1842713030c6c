.PHONY: run test lint format bench

run:  ## install, migrate, seed the demo and start web + worker + beat
	@bash scripts/run.sh

test:  ## install the test dependencies and run the whole suite (PostgreSQL and Redis)
	@bash scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .
