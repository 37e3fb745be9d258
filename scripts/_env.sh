# Shared by demo.sh and test.sh: create .venv (once) and install mae-domains into it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${MAE_DOMAINS_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# PyTorch pinned to a release known to work with timm 1.0 / MONAI 1.6; override with TORCH_SPEC.
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export NO_ALBUMENTATIONS_UPDATE=1
stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  python -m pip install -q $TORCH_SPEC
  python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
