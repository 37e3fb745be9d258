#!/usr/bin/env bash
# Install mae-domains into .venv and run the demo pretraining on the built-in sample archive.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
mae-domains demo "$@"
