#!/usr/bin/env bash
# Downloads the official Keras MobileNetV2 ImageNet weights for one alpha / input size /
# top choice, verifies them (HDF5 signature, optional pinned sha256, and the converter's
# full architecture check) and converts them to weights/<name>.mcnn. Also converts local
# .h5 files (--from) and the copies in ../shared/weights-src (--shared) for offline work.
# Needs bash, curl or wget, sha256sum (or shasum), and a python3 with h5py + numpy: $PYTHON
# if set, else the first of `python3` on PATH, /usr/bin/python3 and the other python3 on
# PATH that imports both (a pyenv or venv python3 first on PATH often lacks h5py).
# The .mcnn files are not committed (.gitignore ignores *.mcnn).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CONVERTER="$REPO/tools/keras_h5_to_mcnn.py"
# Keras' BASE_WEIGHT_PATH; override (e.g. with a mirror or file:// directory) through the environment.
BASE_URL="${MINICNN_KERAS_BASE_URL:-https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/}"
LABELS_URL="${MINICNN_IMAGENET_LABELS_URL:-https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json}"
# The .h5 files --shared converts, in ../shared/weights-src (or the folder given).
SHARED_FILES=(mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5
  mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5
  mobilenet_v2_1.0_224_top_only__dequant_int8_approx.h5)

usage() {
  cat <<'EOF'
usage: weights/fetch_keras_weights.sh [--alpha A] [--size N] [--top | --no-top] [options]
       weights/fetch_keras_weights.sh --from FILE.h5 [--top-file TOP.h5] [--name NAME] [options]
       weights/fetch_keras_weights.sh --shared [DIR]

Download and convert official Keras MobileNetV2 weights:
  --alpha A        width multiplier: 0.35 0.5 0.75 1.0 1.3 1.4        (default 1.0)
  --size N         input size the weights were trained for: 96 128 160 192 224   (default 224)
  --top            with the 1000-class ImageNet classifier (also fetches class names)
  --no-top         feature extractor only (default)
  --sha256 HEX     refuse the download unless its sha256 is HEX
Convert local files instead (offline):
  --from FILE.h5   any Keras MobileNetV2 .h5 (save_weights or full-model file)
  --top-file F.h5  a separate top (Dense "Logits"/"predictions") to merge with --from
  --name NAME      output name without .mcnn (default: derived from the input)
  --shared [DIR]   convert the files in ../shared/weights-src (or DIR)
  --or-shared      download, and if that fails convert ../shared/weights-src instead
Common:
  --out DIR        where the .mcnn goes (default: this weights/ folder)
  --labels FILE    class names (text, one per line, or imagenet_class_index.json)
  --keep-h5        keep the downloaded .h5 next to the .mcnn
  -h, --help       this text
Environment: PYTHON (default: the first python3 that imports h5py and numpy: python3 on
PATH, /usr/bin/python3, then any other python3 on PATH), MINICNN_KERAS_BASE_URL,
MINICNN_IMAGENET_LABELS_URL.
EOF
}

die() { echo "error: $*" >&2; exit 1; }

ALPHA=1.0 SIZE=224 TOP=0 OUT_DIR="$HERE" KEEP=0 EXPECT_SHA="" FROM="" TOP_FILE="" NAME="" LABELS="" SHARED="" OR_SHARED=0
while [ $# -gt 0 ]; do
  case "$1" in
    --alpha) ALPHA="${2:?--alpha needs a value}"; shift 2 ;;
    --size) SIZE="${2:?--size needs a value}"; shift 2 ;;
    --top) TOP=1; shift ;;
    --no-top) TOP=0; shift ;;
    --sha256) EXPECT_SHA="${2:?--sha256 needs a value}"; shift 2 ;;
    --from) FROM="${2:?--from needs a file}"; shift 2 ;;
    --top-file) TOP_FILE="${2:?--top-file needs a file}"; shift 2 ;;
    --name) NAME="${2:?--name needs a value}"; shift 2 ;;
    --or-shared) OR_SHARED=1; shift ;;
    --shared)
      if [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; then SHARED="$2"; shift 2; else SHARED="$REPO/../shared/weights-src"; shift; fi ;;
    --out) OUT_DIR="${2:?--out needs a directory}"; shift 2 ;;
    --labels) LABELS="${2:?--labels needs a file}"; shift 2 ;;
    --keep-h5) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

has_h5py() { "$1" -c 'import h5py, numpy' >/dev/null 2>&1; }

# Picks the interpreter (see the top of this file) and says which one and why.
find_python() {
  if [ -n "${PYTHON:-}" ]; then
    has_h5py "$PYTHON" ||
      die "PYTHON='$PYTHON' cannot import h5py and numpy (Debian/Ubuntu: apt install python3-h5py python3-numpy)"
    PY="$PYTHON"
    echo "using Python $PY (from PYTHON)"
    return
  fi
  local first cand tried=()
  first="$(command -v python3 || true)"
  for cand in "$first" /usr/bin/python3 $(type -ap python3 2>/dev/null || true); do
    [ -n "$cand" ] && [ -x "$cand" ] || continue
    case " ${tried[*]-} " in *" $cand "*) continue ;; esac
    if has_h5py "$cand"; then
      PY="$cand"
      if [ "${#tried[@]}" -eq 0 ]; then
        echo "using Python $PY"
      else
        echo "using Python $PY (${tried[*]} cannot import h5py and numpy)"
      fi
      return
    fi
    tried+=("$cand")
  done
  die "no python3 that imports h5py and numpy (tried: ${tried[*]:-none found}); Debian/Ubuntu: apt install python3-h5py python3-numpy, or set PYTHON=/path/to/python3"
}

# --shared's folder must exist and hold every file it converts: say which are missing.
check_shared() {
  local missing=() f expected="the project's shared weights folder (../shared/weights-src, or a copy of it given as --shared DIR)"
  [ -d "$SHARED" ] || die "--shared: folder '$SHARED' not found; expected $expected holding ${SHARED_FILES[*]}"
  for f in "${SHARED_FILES[@]}"; do [ -f "$SHARED/$f" ] || missing+=("$f"); done
  [ "${#missing[@]}" -eq 0 ] || die "--shared: '$SHARED' lacks ${missing[*]}; expected $expected"
}

[ -z "$SHARED" ] || check_shared
find_python
mkdir -p "$OUT_DIR"

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# The first 8 bytes of every HDF5 file without a user block: \x89 H D F \r \n \x1a \n.
check_hdf5() {
  local sig
  [ -f "$1" ] || die "'$1' not found"
  sig="$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')"
  [ "$sig" = "894844460d0a1a0a" ] ||
    die "'$1' is not an HDF5 file (starts with '$(head -c 40 "$1" | tr -cd '[:print:]')'); was the download an error page?"
}

# convert INPUT.h5 OUTPUT.mcnn [converter options...]: architecture check, write (the converter
# prints the sha256 it records), re-verify the written file.
convert() {
  local in="$1" out="$2"
  shift 2
  check_hdf5 "$in"
  "$PY" "$CONVERTER" "$in" "$out" "$@"
  "$PY" "$CONVERTER" --verify "$out"
}

download() {  # URL DEST; returns non-zero on failure
  local url="$1" dest="$2"
  echo "downloading $url"
  if command -v curl >/dev/null; then
    curl -fL --retry 3 --connect-timeout 30 -o "$dest.part" "$url" || return 1
  elif command -v wget >/dev/null; then
    wget -q --tries=3 -O "$dest.part" "$url" || return 1
  else
    die "neither curl nor wget is installed"
  fi
  mv "$dest.part" "$dest"
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

convert_shared() {
  convert "$SHARED/mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5" "$OUT_DIR/mobilenet_v2_1.0_224_no_top.mcnn"
  convert "$SHARED/mobilenet_v2_0.35_224_no_top__from_teachable_machine.h5" "$OUT_DIR/mobilenet_v2_0.35_224_no_top.mcnn"
  labels=()
  if [ -f "$SHARED/../imagenet-samples/imagenet_labels_1000_keras_order.txt" ]; then
    labels=(--labels "$SHARED/../imagenet-samples/imagenet_labels_1000_keras_order.txt")
  fi
  # The top in shared/ is an approximate (dequantized int8) ImageNet head: named so nobody mistakes it.
  convert "$SHARED/mobilenet_v2_1.0_224_no_top__from_slim_ckpt_npy.h5" "$OUT_DIR/mobilenet_v2_1.0_224_approx_top.mcnn" \
    --top "$SHARED/mobilenet_v2_1.0_224_top_only__dequant_int8_approx.h5" ${labels[@]+"${labels[@]}"}
}

if [ -n "$SHARED" ]; then
  convert_shared
  exit 0
fi

extra=()
[ -n "$LABELS" ] && extra+=(--labels "$LABELS")

if [ -n "$FROM" ]; then
  [ -f "$FROM" ] || die "'$FROM' not found"
  [ -n "$NAME" ] || NAME="$(basename "$FROM" .h5)"
  if [ -n "$TOP_FILE" ]; then
    check_hdf5 "$TOP_FILE"
    extra+=(--top "$TOP_FILE")
  fi
  convert "$FROM" "$OUT_DIR/$NAME.mcnn" ${extra[@]+"${extra[@]}"}
  exit 0
fi

# Keras names files with str(float(alpha)): 0.35 0.5 0.75 1.0 1.3 1.4.
case "$ALPHA" in
  0.35|.35) ALPHA=0.35 ;;
  0.5|.5|0.50) ALPHA=0.5 ;;
  0.75|.75) ALPHA=0.75 ;;
  1|1.0|1.00) ALPHA=1.0 ;;
  1.3|1.30) ALPHA=1.3 ;;
  1.4|1.40) ALPHA=1.4 ;;
  *) die "--alpha $ALPHA: Keras has MobileNetV2 ImageNet weights for 0.35 0.5 0.75 1.0 1.3 1.4" ;;
esac
case "$SIZE" in
  96|128|160|192|224) ;;
  *) die "--size $SIZE: Keras has MobileNetV2 ImageNet weights for 96 128 160 192 224" ;;
esac
suffix=""
[ "$TOP" = 1 ] || suffix="_no_top"
FILE="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_${ALPHA}_${SIZE}${suffix}.h5"
[ -n "$NAME" ] || NAME="mobilenet_v2_${ALPHA}_${SIZE}${suffix}"

if ! download "$BASE_URL$FILE" "$TMP/$FILE"; then
  # --or-shared: offline machines (CI) convert the project's copies instead, and say so.
  if [ "$OR_SHARED" = 1 ] && [ -d "$REPO/../shared/weights-src" ]; then
    echo "download failed (no internet?): converting the copies in $REPO/../shared/weights-src instead" >&2
    SHARED="$REPO/../shared/weights-src"
    check_shared
    convert_shared
    exit 0
  fi
  die "download failed: $BASE_URL$FILE (offline? --shared converts ../shared/weights-src; --from converts a local .h5)"
fi
check_hdf5 "$TMP/$FILE"
sha="$(sha256_of "$TMP/$FILE")"
if [ -n "$EXPECT_SHA" ] && [ "$sha" != "$EXPECT_SHA" ]; then
  die "sha256 of $FILE is $sha, expected $EXPECT_SHA"
fi
if [ "$TOP" = 1 ] && [ -z "$LABELS" ]; then
  if download "$LABELS_URL" "$TMP/imagenet_class_index.json" 2>/dev/null; then
    extra+=(--labels "$TMP/imagenet_class_index.json")
  else
    echo "warning: could not fetch ImageNet class names; the .mcnn will have none" >&2
  fi
fi
convert "$TMP/$FILE" "$OUT_DIR/$NAME.mcnn" --input-size "$SIZE" ${extra[@]+"${extra[@]}"}
if [ "$KEEP" = 1 ]; then
  cp "$TMP/$FILE" "$OUT_DIR/$FILE"
  echo "kept $OUT_DIR/$FILE"
fi
