#!/bin/sh
# make bench-model: the embedded model on Banking77 next to the peers that
# are installed (fasttext, liblinear, scikit-learn), on the same split.
# Timings are measured here; nothing passes or fails.
set -eu
CSA=${1:-build/csa}
DATA=${BANKING77:-../shared/data/banking77}
if [ ! -f "$DATA/train.csv" ]; then
	echo "bench-model: no Banking77 at $DATA (set BANKING77=DIR)" >&2
	exit 1
fi
TMP=$(mktemp -d /tmp/csa-bench-model-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
printf '%-28s %9s %9s %7s %9s %9s %11s %9s\n' model accuracy train_s ece "acc@80%" "cov@99%" pred/s size_MB

# ours, on one core: the default (a hidden layer) and the linear model
ours() {
	name=$1
	shift
	taskset -c 0 "$CSA" model train --data "$DATA/train.csv" --text text --label category \
		--out "$TMP/b77.model" "$@" >"$TMP/train.json"
	taskset -c 0 "$CSA" model eval --model "$TMP/b77.model" --data "$DATA/test.csv" \
		--text text --label category >"$TMP/eval.json"
	python3 - "$name" "$TMP/train.json" "$TMP/eval.json" <<'PY' 2>/dev/null ||
import json, sys
t = json.load(open(sys.argv[2])); e = json.load(open(sys.argv[3]))
print('%-28s %8.2f%% %9.2f %6.2f%% %8.2f%% %8.1f%% %11.0f %9.1f' % (sys.argv[1],
      100 * e['accuracy'], t['train_seconds'], 100 * e['ece'], 100 * e['acc_at_coverage']['0.8'],
      100 * e['coverage_at_acc']['0.99'], e['predict_per_second'], e['model_bytes'] / 1e6))
PY
		cat "$TMP/train.json" "$TMP/eval.json"
}
ours "csa embedded (1 core)"
ours "csa linear (--hidden 0)" --hidden 0

# the peers, where installed
to_ft() { python3 -c "
import csv, sys
r = csv.DictReader(open(sys.argv[1]))
for row in r: print('__label__' + row['category'] + ' ' + ' '.join(row['text'].lower().split()))
" "$1"; }
if command -v fasttext >/dev/null 2>&1; then
	to_ft "$DATA/train.csv" >"$TMP/ft.train"
	to_ft "$DATA/test.csv" >"$TMP/ft.test"
	# its default step (0.1) is far from its best here: one row per step
	for lr in 0.1 0.5 1.0; do
		s=$(date +%s.%N)
		fasttext supervised -input "$TMP/ft.train" -output "$TMP/ft" -wordNgrams 2 -minn 2 \
			-maxn 5 -epoch 50 -lr "$lr" -thread 1 -verbose 0 >/dev/null
		e=$(date +%s.%N)
		acc=$(fasttext test "$TMP/ft.bin" "$TMP/ft.test" | awk '/^P@1/ {print $2}')
		printf '%-28s %8.2f%% %9.2f %7s %9s %9s %11s %9s\n' "fastText (lr $lr)" \
			"$(echo "$acc * 100" | bc -l)" "$(echo "$e - $s" | bc -l)" - - - - -
	done
else
	echo "fastText: not installed (CSA_DEPS_BENCH=1 ./scripts/deps.sh)"
fi
PY3=/usr/bin/python3
[ -x "$PY3" ] || PY3=python3
if "$PY3" -c "import sklearn" 2>/dev/null; then
	"$PY3" - "$DATA" <<'PY'
import csv, sys, time
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_union
d = sys.argv[1]
tr = list(csv.DictReader(open(d + '/train.csv'))); te = list(csv.DictReader(open(d + '/test.csv')))
t0 = time.time()
vec = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                 TfidfVectorizer(analyzer='char_wb', ngram_range=(2, 5), sublinear_tf=True))
X = vec.fit_transform([r['text'] for r in tr])
clf = LogisticRegression(C=20, max_iter=300).fit(X, [r['category'] for r in tr])
t = time.time() - t0
acc = (clf.predict(vec.transform([r['text'] for r in te])) == [r['category'] for r in te]).mean()
print('%-28s %8.2f%% %9.2f %7s %9s %9s %11s %9s' % ('sklearn LR word+char tf-idf', 100 * acc, t, '-', '-', '-', '-', '-'))
PY
else
	echo "scikit-learn: not installed (CSA_DEPS_BENCH=1 ./scripts/deps.sh)"
fi
