#!/usr/bin/env bash
# cli_errors.sh — the cnn tool on bad input: every bad invocation exits non-zero (1 for failures, 2 for usage
# errors), prints exactly one line "cnn: <message>" on stderr, and is never killed by a signal (status < 128).
# Also: `cnn info` on the shipped models works, shows the totals, and `--print` output parses back to the
# same table.
#
# usage: bash tests/cli_errors.sh /path/to/cnn      (CTest sets CNN_SOURCE_DIR to the repository)
set -u
CNN=${1:?usage: cli_errors.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-errors.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
M1="$SRC/models/fmnist-small.cnn"

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}

# expect_error NAME STATUS NEEDLE -- ARGS...
#   STATUS: 1, 2, or "any" (non-zero); NEEDLE: extended regex the stderr line must match ("" for none).
expect_error() {
    local name=$1 want=$2 needle=$3
    shift 4
    "$CNN" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$?
    local lines first
    lines=$(wc -l <"$TMP/err")
    first=$(head -n 1 "$TMP/err")
    if [ "$rc" -eq 0 ]; then
        bad "$name: exit status 0 (want failure): cnn $*"
    elif [ "$rc" -ge 128 ]; then
        bad "$name: killed by signal $((rc - 128)): cnn $*"; sed 's/^/    /' "$TMP/err" | head -n 20
    elif [ "$want" != any ] && [ "$rc" -ne "$want" ]; then
        bad "$name: exit status $rc, want $want: cnn $* -> $first"
    elif [ "$lines" -ne 1 ]; then
        bad "$name: $lines lines on stderr, want one: cnn $*"; sed 's/^/    /' "$TMP/err" | head -n 20
    elif [[ $first != "cnn: "* ]]; then
        bad "$name: stderr does not start with 'cnn: ': $first"
    elif [ -n "$needle" ] && ! grep -Eq -- "$needle" "$TMP/err"; then
        bad "$name: message does not match /$needle/: $first"
    else
        ok
    fi
}

# expect_ok NAME -- ARGS...: exit 0; stdout in $TMP/out.
expect_ok() {
    local name=$1
    shift 2
    "$CNN" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        bad "$name: exit status $rc: cnn $*"; sed 's/^/    /' "$TMP/err" | head -n 20
        return 1
    fi
    ok
}

# ---- tiny IDX datasets, written byte by byte ----
be32() { # a 32-bit big-endian integer as raw bytes
    local v=$1
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(((v >> 24) & 255)) $(((v >> 16) & 255)) \
        $(((v >> 8) & 255)) $((v & 255)))"
}
# idx_images FILE COUNT_IN_HEADER H W COUNT_OF_IMAGES_WRITTEN
idx_images() {
    { printf '\x00\x00\x08\x03'; be32 "$2"; be32 "$3"; be32 "$4"; head -c $(($5 * $3 * $4)) /dev/urandom; } >"$1"
}
# idx_labels FILE COUNT_IN_HEADER COUNT_WRITTEN [CLASSES]
idx_labels() {
    local i classes=${4:-10}
    {
        printf '\x00\x00\x08\x01'
        be32 "$2"
        for ((i = 0; i < $3; i++)); do printf "$(printf '\\x%02x' $((i % classes)))"; done
    } >"$1"
}
# make_dataset DIR NTRAIN NTEST [H W]
make_dataset() {
    local d=$1 h=${4:-28} w=${5:-28}
    mkdir -p "$d"
    idx_images "$d/train-images-idx3-ubyte" "$2" "$h" "$w" "$2"
    idx_labels "$d/train-labels-idx1-ubyte" "$2" "$2"
    idx_images "$d/t10k-images-idx3-ubyte" "$3" "$h" "$w" "$3"
    idx_labels "$d/t10k-labels-idx1-ubyte" "$3" "$3"
}

GOOD="$TMP/good"
make_dataset "$GOOD" 40 20

# ---- the command line itself ----
expect_error "no arguments" 2 "command" --
expect_ok "--help" -- --help && { grep -q 'train' "$TMP/out" && grep -q 'eval' "$TMP/out" && grep -q 'info' "$TMP/out" && ok || bad "--help lists no commands"; }
expect_ok "--version" -- --version && { grep -Eq '^cnn [0-9]+\.[0-9]+\.[0-9]+' "$TMP/out" && ok || bad "--version: $(cat "$TMP/out")"; }
for c in train eval info; do
    expect_ok "help $c" -- help "$c" && { grep -q "usage: cnn $c" "$TMP/out" && ok || bad "help $c: no usage line"; }
    expect_ok "$c --help" -- "$c" --help
done
expect_error "unknown command" 2 "unknown command 'frobnicate'" -- frobnicate
expect_error "help unknown" 2 "unknown command" -- help frobnicate
expect_error "unknown top option" 2 "unknown option" -- --frobnicate

# ---- model files ----
expect_error "missing model" 1 "No such file" -- info "$TMP/nonexistent.cnn"
expect_error "model is a directory" 1 "directory" -- info "$TMP"
expect_error "no model" 2 "expected a model file" -- info
expect_error "two models" 2 "unexpected extra argument" -- info "$M1" "$M1"
: >"$TMP/empty.cnn"
expect_error "empty model" 1 "" -- info "$TMP/empty.cnn"
head -c 3000 /dev/urandom >"$TMP/garbage.cnn"
expect_error "binary model" 1 "" -- info "$TMP/garbage.cnn"
printf 'input c=1 h=28 w=28\nrelu\ndense name=fc out=10 bogus=3\nsoftmax_ce\n' >"$TMP/badkey.cnn"
expect_error "bad key" 1 "badkey\.cnn:3:[0-9]+:.*bogus" -- info "$TMP/badkey.cnn"
printf 'input c=1 h=28 w=28\n# a comment\n  frobnicate k=3\n' >"$TMP/badtype.cnn"
expect_error "unknown layer type" 1 "badtype\.cnn:3:[0-9]+:" -- info "$TMP/badtype.cnn"
printf 'input c=1 h=28 w=28\nflatten\ndense out=abc\n' >"$TMP/badval.cnn"
expect_error "bad value" 1 "badval\.cnn:3:[0-9]+:" -- info "$TMP/badval.cnn"
printf 'input c=1 h=28 w=28\nflatten name=f\ndense from=nowhere out=10\n' >"$TMP/badfrom.cnn"
expect_error "unknown from=" 1 "badfrom\.cnn:3" -- info "$TMP/badfrom.cnn"
printf 'input c=1 h=28 w=28\ndense name=a out=10\ndense name=b from=input out=5\nadd from=a,b\n' >"$TMP/badadd.cnn"
expect_error "add shape mismatch" 1 "badadd\.cnn:4" -- info "$TMP/badadd.cnn"
expect_error "train malformed model" 1 "badkey\.cnn:3:[0-9]+:" -- train "$TMP/badkey.cnn" --data "$GOOD"

# ---- options and numbers ----
expect_error "unknown option" 2 "unknown option '--frobnicate'" -- info "$M1" --frobnicate
expect_error "single dash" 2 "unknown option '-x'" -- info "$M1" -x
expect_error "flag with value" 2 "takes no value" -- info "$M1" --json=1
expect_error "info batch 0" 2 "--batch" -- info "$M1" --batch 0
expect_error "missing value at end" 2 "--data needs a value" -- train "$M1" --data
expect_error "missing value before option" 2 "--epochs needs a value" -- train "$M1" --data "$GOOD" --epochs --json
expect_error "no --data" 2 "--data" -- train "$M1"
for bad_arg in "--epochs abc" "--epochs 0" "--epochs 3x" "--epochs -2" "--epochs 1.5" \
    "--epochs 99999999999999999999999" "--batch 0" "--batch -5" "--batch 1e3" "--lr -1" "--lr 0" \
    "--lr nan" "--lr inf" "--lr 1e999" "--lr 0x10" "--lr 0.1.2" "--threads 100000" "--threads -1" \
    "--momentum 2" "--momentum -0.5" "--seed -1" "--seed 18446744073709551616" "--steps 0" "--steps 1.5" \
    "--weight-decay -1" "--warmup-epochs -1" "--optimizer rmsprop" "--schedule linear" \
    "--normalize 0.5" "--normalize 0.5,0" "--normalize a,b" "--normalize 0.1,0.2,0.3"; do
    # shellcheck disable=SC2086
    expect_error "train $bad_arg" 2 "${bad_arg%% *}" -- train "$M1" --data "$GOOD" $bad_arg
done
expect_error "empty number" 2 "--batch" -- train "$M1" --data "$GOOD" --batch ""
expect_error "momentum with adam" 2 "momentum" -- train "$M1" --data "$GOOD" --optimizer adam --momentum 0.5
expect_error "nesterov without momentum" 2 "nesterov" -- train "$M1" --data "$GOOD" --nesterov --momentum 0
expect_error "step without step-epochs" 2 "step-epochs" -- train "$M1" --data "$GOOD" --schedule step
expect_error "gamma without step" 2 "gamma" -- train "$M1" --data "$GOOD" --gamma 0.5
expect_error "eval no weights" 2 "--weights" -- eval "$M1" --data "$GOOD"
expect_error "eval no data" 2 "--data" -- eval "$M1" --weights "$TMP/w.safetensors"
expect_error "eval bad batch" 2 "--batch" -- eval "$M1" --weights "$TMP/w" --data "$GOOD" --batch x

# ---- data folders and files ----
expect_error "missing data dir" 1 "No such file" -- train "$M1" --data "$TMP/nonexistent"
expect_error "data dir is a file" 1 "not a directory" -- train "$M1" --data "$M1"
mkdir -p "$TMP/emptydir"
expect_error "empty data dir" 1 "" -- train "$M1" --data "$TMP/emptydir"
cp -r "$GOOD" "$TMP/lying"
idx_images "$TMP/lying/train-images-idx3-ubyte" 60000 28 28 40 # header says 60000, file holds 40
expect_error "lying IDX header" 1 "" -- train "$M1" --data "$TMP/lying"
cp -r "$GOOD" "$TMP/huge"
{ printf '\x00\x00\x08\x03'; be32 4294967295; be32 65535; be32 65535; head -c 1000 /dev/urandom; } \
    >"$TMP/huge/train-images-idx3-ubyte" # absurd dimensions, 1000 bytes of data
expect_error "absurd IDX dimensions" 1 "" -- train "$M1" --data "$TMP/huge"
cp -r "$GOOD" "$TMP/magic"
{ printf '\x00\x00\x0d\x03'; be32 40; be32 28; be32 28; head -c 31360 /dev/urandom; } >"$TMP/magic/train-images-idx3-ubyte"
expect_error "bad IDX magic" 1 "" -- train "$M1" --data "$TMP/magic"
cp -r "$GOOD" "$TMP/count"
idx_labels "$TMP/count/train-labels-idx1-ubyte" 39 39 # 40 images, 39 labels
expect_error "label count mismatch" 1 "" -- train "$M1" --data "$TMP/count"
cp -r "$GOOD" "$TMP/trunc"
: >"$TMP/trunc/t10k-labels-idx1-ubyte"
expect_error "empty labels file" 1 "" -- train "$M1" --data "$TMP/trunc"
cp -r "$GOOD" "$TMP/gz"
rm "$TMP/gz/train-images-idx3-ubyte"
head -c 20 /dev/urandom >"$TMP/gz/train-images-idx3-ubyte.gz" # not gzip at all
expect_error "corrupt gzip" 1 "" -- train "$M1" --data "$TMP/gz"
cp -r "$GOOD" "$TMP/labels"
idx_labels "$TMP/labels/train-labels-idx1-ubyte" 40 40 200 # labels up to 39 for a 10-class model
expect_error "labels beyond the model's classes" 1 "" -- train "$M1" --data "$TMP/labels"
make_dataset "$TMP/small" 40 20 14 14
expect_error "image size mismatch" 1 "14x14.*28x28|28x28.*14x14" -- train "$M1" --data "$TMP/small"
sed 's/^input .*/input c=3 h=28 w=28/' "$M1" >"$TMP/rgb.cnn"
expect_error "channel mismatch" 1 "1x28x28.*3x28x28|3x28x28.*1x28x28" -- train "$TMP/rgb.cnn" --data "$GOOD"
sed 's/out=10/out=5/' "$M1" >"$TMP/five.cnn"
expect_error "class mismatch" 1 "10 classes.*5 outputs|classes" -- train "$TMP/five.cnn" --data "$GOOD"
grep -v softmax_ce "$M1" >"$TMP/noloss.cnn"
expect_error "no loss layer" 1 "loss" -- train "$TMP/noloss.cnn" --data "$GOOD"
expect_error "--out into a missing folder" 1 "nonexistent" -- train "$M1" --data "$GOOD" --out "$TMP/nonexistent/w.safetensors"
expect_error "--out is a directory" 1 "directory" -- train "$M1" --data "$GOOD" --out "$TMP"

# ---- weights files ----
expect_error "missing weights" 1 "No such file" -- eval "$M1" --weights "$TMP/none.safetensors" --data "$GOOD"
expect_error "weights is a directory" 1 "directory" -- eval "$M1" --weights "$TMP" --data "$GOOD"
head -c 500 /dev/urandom >"$TMP/garbage.safetensors"
expect_error "garbage weights" 1 "" -- eval "$M1" --weights "$TMP/garbage.safetensors" --data "$GOOD"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f{}' >"$TMP/lying.safetensors" # header length far beyond the file
expect_error "lying safetensors header" 1 "" -- eval "$M1" --weights "$TMP/lying.safetensors" --data "$GOOD"

# ---- a non-finite loss stops training with epoch and step ----
"$CNN" train "$M1" --data "$GOOD" --batch 16 --normalize 0,1e-45 --threads 1 >"$TMP/out" 2>"$TMP/err"
rc=$?
last=$(tail -n 1 "$TMP/err")
if [ "$rc" -ne 1 ]; then
    bad "non-finite loss: exit status $rc, want 1"; sed 's/^/    /' "$TMP/err" | head -n 20
elif ! [[ $last =~ ^cnn:\ .*epoch\ 1/1.*step\ [0-9]+ ]]; then
    bad "non-finite loss: last stderr line does not name epoch and step: $last"
else
    ok
fi

# A loss that becomes non-finite while training (inputs scaled to ~1e20 blow the weights up in one step).
"$CNN" train "$M1" --data "$GOOD" --batch 8 --normalize 0,1e-20 --threads 1 >"$TMP/out" 2>"$TMP/err"
rc=$?
last=$(tail -n 1 "$TMP/err")
if [ "$rc" -ne 1 ]; then
    bad "non-finite loss in training: exit status $rc, want 1"; sed 's/^/    /' "$TMP/err" | head -n 20
elif ! [[ $last =~ ^cnn:\ non-finite\ loss.*epoch\ 1/1,\ step\ [0-9]+ ]]; then
    bad "non-finite loss in training: last stderr line: $last"
else
    ok
fi

# ---- the tiny dataset trains: epochs, partial batches, --steps, optimizers and schedules ----
if expect_ok "tiny train" -- train "$M1" --data "$GOOD" --epochs 3 --batch 16 --steps 7 --threads 1 --json; then
    # 40 samples at batch 16: 3 steps per epoch (16, 16, 8); 7 steps = 3 + 3 + 1.
    n=$(grep -Ec '^epoch [1-3]/3  loss [0-9.]+  train_acc [0-9.]+  test_acc [0-9.]+  [0-9.]+ s  [0-9]+ img/s$' "$TMP/out")
    [ "$n" -eq 3 ] && ok || bad "tiny train: want 3 epoch lines, got: $(cat "$TMP/out")"
    grep -Eq '"epochs":3,"steps":7,' "$TMP/out" && ok || bad "tiny train: JSON epochs/steps: $(tail -n 1 "$TMP/out")"
fi
for extra in "--optimizer adam" "--optimizer adamw --weight-decay 0.01 --schedule cosine --warmup-epochs 0.5" \
    "--nesterov --weight-decay 0.0005 --schedule step --step-epochs 1 --gamma 0.5" "--no-shuffle --lr 0.01" \
    "--normalize 0.286,0.353 --momentum 0"; do
    # shellcheck disable=SC2086
    expect_ok "tiny train $extra" -- train "$M1" --data "$GOOD" --epochs 2 --batch 32 --steps 3 --threads 1 $extra
done
"$CNN" train "$M1" --data "$GOOD" --steps 2 --batch 8 --threads 1 --out "$TMP/tiny.safetensors" >/dev/null 2>&1 || bad "tiny train --out"
if [ -f "$TMP/tiny.safetensors" ]; then
    ok
    expect_error "weights of another model" 1 "" -- eval "$SRC/models/lenet5.cnn" --weights "$TMP/tiny.safetensors" --data "$GOOD"
    expect_ok "eval tiny" -- eval "$M1" --weights "$TMP/tiny.safetensors" --data "$GOOD" --threads 1
    grep -Eq '^test loss [0-9.]+  accuracy [0-9.]+  \(20 images\)' "$TMP/out" && ok || bad "eval text: $(head -n 1 "$TMP/out")"
    grep -q 'confusion matrix' "$TMP/out" && ok || bad "eval: no confusion matrix"
    # Not a Fashion-MNIST folder: rows labelled with indices, not names.
    ! grep -q 'Ankle boot' "$TMP/out" && ok || bad "eval: class names on a folder that is not Fashion-MNIST"
fi

# ---- cnn info ----
if expect_ok "info M1" -- info "$M1"; then
    cp "$TMP/out" "$TMP/info1"
    grep -Eq '^total parameters +421642 ' "$TMP/info1" && ok || bad "info M1: total parameters: $(grep total "$TMP/info1")"
    grep -Eq '^total GFLOPs +0\.0' "$TMP/info1" && ok || bad "info M1: GFLOPs line: $(grep GFLOPs "$TMP/info1")"
    grep -Eq '^activation memory .*MiB training.*MiB inference at batch 1$' "$TMP/info1" && ok || bad "info M1: memory line"
    for l in "conv1 +conv2d +input +32x28x28 +320 " "conv2 +conv2d .* +64x14x14 +18496 " \
        "fc1 +dense .* +128x1x1 +401536 " "fc2 +dense .* +10x1x1 +1290 " " +64x7x7 "; do
        grep -Eq "$l" "$TMP/info1" && ok || bad "info M1: no row /$l/"
    done
    [ "$(grep -Ec '^ *[0-9]+  ' "$TMP/info1")" -eq 12 ] && ok || bad "info M1: want 12 layer rows"
fi
expect_ok "info --batch" -- info "$M1" --batch 64 && { grep -q 'at batch 64$' "$TMP/out" && ok || bad "info --batch 64"; }
for m in fmnist-small lenet5 fmnist-resnet; do
    f="$SRC/models/$m.cnn"
    expect_ok "info $m" -- info "$f" || continue
    cp "$TMP/out" "$TMP/table-$m"
    expect_ok "info --print $m" -- info "$f" --print || continue
    cp "$TMP/out" "$TMP/printed-$m.cnn"
    if expect_ok "info of printed $m" -- info "$TMP/printed-$m.cnn"; then
        # (the recipe row names the line the recipe stands on, which differs in the printed text)
        if cmp -s <(sed 's/ (line [0-9]*)$//' "$TMP/out") <(sed 's/ (line [0-9]*)$//' "$TMP/table-$m"); then ok; else
            bad "info $m: the printed model gives another table"; diff "$TMP/table-$m" "$TMP/out" | head -n 20
        fi
    fi
    # Printing is a fixed point: printing the printed text gives the same layers (comments aside).
    expect_ok "print of printed $m" -- info "$TMP/printed-$m.cnn" --print &&
        { [ "$(grep -v '^#' "$TMP/out")" == "$(grep -v '^#' "$TMP/printed-$m.cnn")" ] && ok ||
            bad "info --print $m: not a fixed point"; }
done
grep -Eq '^total parameters +61706 ' "$TMP/table-lenet5" 2>/dev/null && ok || bad "lenet5: want 61706 parameters"
if expect_ok "info --json" -- info "$M1" --json; then
    if [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["params"] == 421642, d["params"]
assert len(d["layers"]) == 12, len(d["layers"])
assert d["layers"][1]["name"] == "conv1" and d["layers"][1]["output"] == [32, 28, 28], d["layers"][1]
assert d["layers"][1]["flops"] == 2 * 32 * 9 * 28 * 28, d["layers"][1]["flops"]
assert sum(l["params"] for l in d["layers"]) == d["params"]
assert d["activation_bytes_train"] >= d["activation_bytes_inference"] > 0
' "$TMP/out" && ok || bad "info --json: $(cat "$TMP/out")"
    else
        grep -q '"params":421642' "$TMP/out" && ok || bad "info --json: no params"
    fi
fi
expect_error "--print with --json" 2 "" -- info "$M1" --print --json

echo "cli_errors: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
