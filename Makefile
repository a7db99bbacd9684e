# Two commands do the whole set-up on a fresh machine:
#   make run    install into .venv, then start the dashboard on the embedded default
#   make test   install into .venv (plus test tools), then run the test suite
# The dashboard listens on 127.0.0.1; COMPRESSION_LISTEN=0.0.0.0 make run opens it to every interface.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test setup setup-dev clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt requirements-nodeps.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-ray.txt requirements-openvino.txt
	$(BIN)/pip install -q -r requirements-dev.txt -r requirements-ray.txt -r requirements-openvino.txt
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

run: setup
	$(BIN)/python -m ui.serve --server.port $(PORT)

test: setup-dev
	$(BIN)/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
