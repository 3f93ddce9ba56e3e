#!/bin/sh
# `make run`: serve the real model. If models/cloob has not been exported yet, export it from
# Hugging Face (tools/export_model.py --fetch). Offline, fall back to a random-weight demo model of
# the full architecture, and say loudly that its answers are meaningless (the server also says so in
# its log and in /info, from cloob.json's random_weights flag).
# Environment: CLOOB_MODEL_DIR (default models/cloob), CLOOB_REPO (default
# rinna/japanese-cloob-vit-b-16), PYTHON, BUILD, SHARED; any other CLOOB_* setting reaches the server.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-build}
SHARED=${SHARED:-../shared}
MODEL_DIR=${CLOOB_MODEL_DIR:-models/cloob}
REPO=${CLOOB_REPO:-rinna/japanese-cloob-vit-b-16}
DEMO_DIR=models/demo-random-full

if [ ! -f "$MODEL_DIR/model.pt" ]; then
  echo "run: no model in $MODEL_DIR; exporting $REPO from Hugging Face ..." >&2
  if "$PYTHON" tools/export_model.py --fetch "$REPO" --out "$MODEL_DIR"; then
    echo "run: exported $REPO into $MODEL_DIR" >&2
  else
    echo "" >&2
    echo "run: ******************************************************************************" >&2
    echo "run: could not download $REPO (offline?)." >&2
    echo "run: SERVING A RANDOM-WEIGHT DEMO MODEL ($DEMO_DIR): its embeddings and scores are" >&2
    echo "run: MEANINGLESS. Export the real model with:" >&2
    echo "run:   $PYTHON tools/export_model.py --fetch $REPO --out $MODEL_DIR" >&2
    echo "run: ******************************************************************************" >&2
    if [ ! -f "$DEMO_DIR/model.pt" ]; then
      "$PYTHON" tools/export_model.py --random full --seed 0 \
        --tokenizer "$SHARED/model/google_sp.model" --out "$DEMO_DIR"
    fi
    MODEL_DIR=$DEMO_DIR
  fi
fi
exec "$BUILD/cloob-server" --model_dir "$MODEL_DIR" "$@"
