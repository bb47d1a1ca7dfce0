# The whole set-up on a fresh Debian machine:  make run   |   make test
VENV      ?= .venv
PY        := $(VENV)/bin/python
CONFIG    ?= config.json
MOSQUITTO ?= /usr/sbin/mosquitto
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install install-service run test test-unit typecheck bench broker test-tools clean

# install-service: what the service needs (make run); install: that and the test tools
install-service: $(VENV)/.installed broker

install: $(VENV)/.installed-test broker

$(VENV)/.installed: setup.cfg pyproject.toml
	@python3 -c 'import ensurepip' 2>/dev/null || { \
	  echo "python3-venv is missing; installing it"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e . --config-settings editable_mode=compat
	@# write twisted's plugin cache now, while we may write to the venv
	$(PY) -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

broker:
	@test -x $(MOSQUITTO) || { \
	  echo "mosquitto is missing; installing it"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q mosquitto mosquitto-clients; }

run: install-service
	contrib/run-dev.sh $(VENV) $(CONFIG)

test: install test-tools typecheck
	$(VENV)/bin/pytest

# the type hints, checked (mypy with the zope.interface plugin; see [mypy] in setup.cfg)
typecheck: install
	$(VENV)/bin/mypy

# the pure core and the adapters on task.Clock: no broker, no subprocess; seconds
test-unit: install
	$(VENV)/bin/pytest tests/unit

# the browser test drives Debian's Chromium; the TLS tests make certificates with openssl;
# the broker tests run a private nats-server (its MQTT speaks only 3.1.1) and a private
# three-node RabbitMQ cluster; the active/standby tests a private PostgreSQL cluster
# (initdb and pg_ctl from Debian's postgresql)
test-tools:
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	test -x /usr/bin/chromedriver || missing="$$missing chromium-driver"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	test -x /usr/sbin/nats-server || missing="$$missing nats-server"; \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing="$$missing rabbitmq-server"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing for the tests"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; \
	fi

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info .hypothesis .mypy_cache twisted/plugins/dropin.cache
