# The two commands: `make dev` runs the local stack, `make test` runs the suite.
# Both do their own set-up on a fresh machine (virtualenv, Python and Node deps).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed
export PYTHONPATH := $(CURDIR)/layers/ripple

.PHONY: dev test lint sam-check bench smoke keys clean

$(PY_STAMP): requirements-dev.txt layers/ripple/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

dev: $(PY_STAMP)
	$(PY) -m ripple.local

test: $(PY_STAMP) $(JS_STAMP)
	$(PY) -m pytest

lint: $(PY_STAMP)
	$(VENV)/bin/ruff check layers functions tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml

# SAM lives in its own virtualenv so the test environment stays small.
SAM_VENV ?= $(VENV)/sam
SAM := $(SAM_VENV)/bin/sam

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli

sam-check: $(PY_STAMP) $(SAM)
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(SAM) validate --lint
	SAM_CLI_TELEMETRY=0 $(SAM) build

bench: $(PY_STAMP)
	$(PY) bench/fanout.py
	$(PY) bench/rls.py
	$(PY) bench/broadcast.py

# `make smoke` explains itself; `make smoke ARGS="--local"` checks `make dev`; docs/deploy.md
# shows the call against a deployed stack.
smoke: $(PY_STAMP)
	$(PY) bench/smoke.py $(if $(ARGS),$(ARGS),--help)

# Production anon and service_role keys for the JWT secret: make keys SECRET='...' [YEARS=10]
keys: $(PY_STAMP)
	@test -n "$(SECRET)" || { echo 'usage: make keys SECRET=<the JwtSecretArn secret string> [YEARS=10]'; exit 2; }
	@$(PY) -c 'import sys, time, jwt; now = int(time.time()); exp = now + int(sys.argv[2]) * 365 * 86400; [print(f"{r:<13} " + jwt.encode({"iss": "ripple", "role": r, "iat": now, "exp": exp}, sys.argv[1], algorithm="HS256")) for r in ("anon", "service_role")]' "$(SECRET)" "$(or $(YEARS),10)"

clean:
	rm -rf $(VENV) $(JS_DIR)/node_modules .aws-sam
