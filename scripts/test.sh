#!/usr/bin/env bash
# Install mae-domains into .venv and run the whole test suite (CI runs exactly this).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
python -m pytest -q -p no:cacheprovider "$@"
