# The two commands: `make dev` runs the local stack, `make test` runs the suite.
# Both do their own set-up on a fresh machine (virtualenv, Python and Node deps, Chromium).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed
WEB_DIR := web
WEB_STAMP := $(WEB_DIR)/node_modules/.installed
CHROMIUM ?= /usr/bin/chromium
# Where `make dev` keeps its data and writes its URLs and keys (env).
STATE_DIR := $(or $(RIPPLE_STATE_DIR),$(CURDIR)/.ripple)
export PYTHONPATH := $(CURDIR)/layers/ripple

.PHONY: dev test lint sam-check bench smoke keys clean token psql env explain demo test-deps migrate

$(PY_STAMP): requirements-dev.txt layers/ripple/requirements.txt
	@echo "==> Setting up $(VENV): Python packages from requirements-dev.txt (first run only, about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	bash -o pipefail -c '$(VENV)/bin/pip install --disable-pip-version-check --progress-bar off \
	  -r requirements-dev.txt | { grep --line-buffered -v "^Requirement already satisfied" || true; }'
	@echo "==> $(VENV) is ready"
	touch $@

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@echo "==> Installing the test suite's npm packages ($(JS_DIR))"
	cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@echo "==> Installing supabase-js for the Inspector and demo pages ($(WEB_DIR))"
	cd $(WEB_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests drive Debian's Chromium and the README's examples use psql: both are
# installed here when missing (as root, as CI runs), otherwise named.
test-deps:
	@missing=""; command -v $(CHROMIUM) >/dev/null 2>&1 || missing=" chromium"; \
	command -v psql >/dev/null 2>&1 || missing="$$missing postgresql-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> Installing$$missing for the browser tests and the README's examples (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) || exit 1; \
	  else \
	    echo "The tests need:$$missing (sudo apt-get install$$missing, or set CHROMIUM=/path/to/chromium)" >&2; \
	    exit 1; \
	  fi; \
	fi

dev: $(PY_STAMP) $(WEB_STAMP)
	@$(PY) -m ripple.local

# make token SUB=<uuid> [ROLE=authenticated|anon|service_role] [CLAIMS='{"organization_id": "…"}']
token: $(PY_STAMP)
	@$(PY) -m ripple.local.token --sub "$$SUB" --role "$${ROLE:-authenticated}" --claims "$$CLAIMS"

psql:
	@command -v psql >/dev/null 2>&1 || { echo "make psql needs psql: apt-get install postgresql-client" >&2; exit 1; }
	@test -f "$(STATE_DIR)/env" || { echo "make psql: no $(STATE_DIR)/env; start the stack with make dev" >&2; exit 1; }
	@. "$(STATE_DIR)/env" && exec psql -v ON_ERROR_STOP=1 "$$DATABASE_URL"

# eval "$(make -s env)": the running stack's URLs and keys, as `make dev` wrote them.
env:
	@test -f "$(STATE_DIR)/env" || { echo "make env: no $(STATE_DIR)/env; start the stack with make dev" >&2; exit 1; }
	@cat "$(STATE_DIR)/env"

# make explain TABLE=public.students WHERE='id=<uuid>' [TYPE=UPDATE] | ROW='{…}' | ID=<outbox id>
explain: $(PY_STAMP)
	@$(PY) -m ripple.local.inspector.cli --env "$(STATE_DIR)/env" --table "$$TABLE" --where "$$WHERE" \
	  --row "$$ROW" --old "$$OLD" --type "$${TYPE:-INSERT}" --outbox-id "$$ID"

demo: $(PY_STAMP)
	@$(PY) -m ripple.local.inspector.demo --env "$(STATE_DIR)/env"

# The suite starts with the linters: ruff, mypy and cfn-lint are clean or nothing runs.
test: lint $(JS_STAMP) $(WEB_STAMP) test-deps
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
	$(PY) bench/versus.py
	$(PY) bench/fanout.py
	$(PY) bench/rls.py
	$(PY) bench/broadcast.py
	$(PY) bench/retention.py
	$(PY) bench/cold.py

# `make smoke` explains itself; `make smoke ARGS="--local"` checks `make dev`; docs/deploy.md
# shows the call against a deployed stack.
smoke: $(PY_STAMP)
	$(PY) bench/smoke.py $(if $(ARGS),$(ARGS),--help)

# Ripple's migrations (sql/*.sql, name order, one transaction each, a deadlock victim re-run):
# make migrate DB_URL='postgresql://…'
migrate: $(PY_STAMP)
	@test -n "$(DB_URL)" || { echo "usage: make migrate DB_URL='postgresql://…'"; exit 2; }
	@$(PY) -c 'import sys; from pathlib import Path; from ripple.local.postgres import migrate; [print("applied", name) for name in migrate(sys.argv[1], Path("sql"))]' "$(DB_URL)"

# Production anon and service_role keys for the JWT secret: make keys SECRET='...' [YEARS=10]
keys: $(PY_STAMP)
	@test -n "$(SECRET)" || { echo 'usage: make keys SECRET=<the JwtSecretArn secret string> [YEARS=10]'; exit 2; }
	@$(PY) -c 'import sys, time, jwt; now = int(time.time()); exp = now + int(sys.argv[2]) * 365 * 86400; [print(f"{r:<13} " + jwt.encode({"iss": "ripple", "role": r, "iat": now, "exp": exp}, sys.argv[1], algorithm="HS256")) for r in ("anon", "service_role")]' "$(SECRET)" "$(or $(YEARS),10)"

clean:
	rm -rf $(VENV) $(JS_DIR)/node_modules $(WEB_DIR)/node_modules .aws-sam
