#!/bin/sh
# stage_obs.sh -- observability: /metrics validated by promtool and an
# OpenMetrics parser, the Grafana dashboard's queries against it, the
# Prometheus config, JSON logs, warm-up before /ready (tests/obs_check.py).
set -u
BUILD=${BUILD:-build} TESTMODEL=${TESTMODEL:-build/testmodel} exec "${PYTHON:-/usr/bin/python3}" tests/obs_check.py
