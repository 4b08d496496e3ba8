# The two commands a newcomer needs:  make serve  and  make test.
# Both create .venv on first use. `make serve` installs only what the service imports (the
# project's base dependencies); `make test` installs the `dev` extra (test tools, training,
# speech and benchmark dependencies); the training targets install the `train` extra. Each
# install has its own stamp and runs again when pyproject.toml or constraints.txt changed.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
# $(call stamp,EXTRA): the stamp of an install of `.[EXTRA]` (`serve`: the base dependencies).
stamp    = $(VENV)/.installed-$(1)
HOST    ?= 127.0.0.1
PORT    ?= 8000
# Corpora, as `python -m training.data fetch` (make data) lays them out.
DATA    ?= data
SHARED  ?= $(abspath ../shared/data)
CAPTIONER_EPOCHS ?= 4
# NLTK's Punkt tables, when the shared data is beside the checkout (the tokenizer falls back
# to a regular-expression sentence splitter without them).
ifneq ($(wildcard $(DATA)/nltk_data),)
export NLTK_DATA ?= $(DATA)/nltk_data
endif

.PHONY: install install-train install-dev serve test test-fast model-char model-captioner model-wikitext2 model-wikitext2-awd model-wikitext2-pieces model-ngram model-ptb model-rescoring compare-cells nbest rescoring clean docs data

install: $(call stamp,serve)
install-train: $(call stamp,train)
install-dev: $(call stamp,dev)

# serve -> `pip install -e .`; train, speech, bench, dev -> `pip install -e '.[EXTRA]'`.
# `dev` holds every other extra, so its install stamps them all.
$(VENV)/.installed-%: pyproject.toml constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -c constraints.txt -e '.$(if $(filter serve,$*),,[$*])'
	touch $@ $(if $(filter dev,$*),$(foreach extra,serve train speech bench,$(call stamp,$(extra))))

serve: $(call stamp,serve)
	$(VENV)/bin/uvicorn --factory app.main:create_app --host $(HOST) --port $(PORT) --no-access-log

# Everything the CI runs (.ci/run calls it). Installs Redis, Chromium and espeak-ng when missing
# (as root; otherwise prints the command), starts Redis, then runs the whole suite.
test: $(call stamp,dev)
	tests/system_services.sh
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The development loop: the unit, engine and API tiers (611 tests, about 1 minute measured on 2
# CPU cores shared with other jobs), no browsers, soak, end-to-end servers, training through
# the CLIs, benchmarks or documentation build. tests/conftest.py marks the rest `slow`: all but
# tests/unit, tests/engine and tests/api, and a few named tests of those. The `fast`
# Hypothesis profile (tests/conftest.py) tries fewer examples per property test than `make
# test` does. Needs only redis-server of the system services.
test-fast: $(call stamp,dev)
	tests/system_services.sh redis-server
	$(PYTHON) -m pytest -m "not slow" --hypothesis-profile=fast $(PYTEST_ARGS)

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on any broken link or anchor.
# Every corpus the docs use, under data/: copied from ../shared/data when it is there (each file
# checked against its recorded SHA-256), downloaded from the canonical sources otherwise.
DATASETS ?= all
data: $(call stamp,train)
	$(PYTHON) -m training.data fetch $(DATASETS) --data-dir $(DATA)

docs: $(call stamp,dev)
	$(PYTHON) -m mkdocs build --strict --site-dir site

# Rebuild the shipped character model from the shared data (about 50 minutes on 2 CPU cores).
model-char: $(call stamp,train)
	$(PYTHON) -m training.data fetch tinyshakespeare --data-dir $(DATA)
	$(PYTHON) -m training.train_lm --data $(DATA)/tinyshakespeare/input.txt --level char \
	  --embedding-dim 128 --hidden-dim 512 --num-layers 2 --dropout 0.2 --batch-size 32 --bptt 128 \
	  --lr 2e-3 --epochs 7 --patience 3 --weights-dtype float16 \
	  --example-prompt "ROMEO:" --run-dir runs/shakespeare-char --export-dir weights/shakespeare-char-lstm

# Rebuild the shipped captioner (Flickr8k train split; frozen EfficientNet-Lite0 features are
# cached in the run directory; about 10 minutes per epoch on 2 CPU cores).
model-captioner: $(call stamp,train)
	$(PYTHON) -m training.data fetch flickr8k --data-dir $(DATA)
	$(PYTHON) -m training.train_captioner --data $(DATA)/flickr8k --encoder efficientnet_lite0 \
	  --embedding-dim 256 --hidden-dim 512 --attention-dim 256 --dropout 0.5 --batch-size 64 --lr 4e-4 \
	  --epochs $(CAPTIONER_EPOCHS) --patience 3 --eval-beam-size 3 --weights-dtype float16 \
	  --run-dir runs/flickr8k-captioner --export-dir weights/flickr8k-captioner

# Rebuild the shipped WikiText-2 word model: 2x512 LSTM, embedding 256, adaptive softmax over
# the full 33,278-word vocabulary, 10 epochs with a cosine schedule (about 100 minutes on 2 CPU
# cores; resumable: re-run after an interruption).
model-wikitext2: $(call stamp,train)
	$(PYTHON) -m training.data fetch wikitext-2 --data-dir $(DATA)
	$(PYTHON) -m training.train_lm --data $(DATA)/wikitext-2 --level word --style wikitext --cell lstm \
	  --embedding-dim 256 --hidden-dim 512 --num-layers 2 --dropout 0.4 --embedding-dropout 0.1 \
	  --head adaptive --adaptive-cutoffs 2000 10000 --optimizer adamw --lr 2e-3 --weight-decay 0.01 \
	  --schedule cosine --batch-size 32 --bptt 70 --clip 0.25 --epochs 10 --patience 3 \
	  --weights-dtype float16 --checkpoint-every 200 \
	  --example-prompt "The game was released in" --run-dir runs/wikitext2-lstm --export-dir weights/wikitext2-lstm

# Kneser-Ney 3- and 5-gram models of WikiText-2 and PTB, servable by /v1/score (about 10 s each;
# the 5-grams are 86 MB and 37 MB, so they are built, not shipped: point RNNSERVE_MODELS_DIR at a directory holding
# them and the shipped models).
model-ngram: $(call stamp,train)
	$(PYTHON) -m training.data fetch wikitext-2 ptb --data-dir $(DATA)
	for order in 3 5; do \
	  $(PYTHON) -m training.train_ngram --data $(DATA)/wikitext-2 --style wikitext --order $$order --output runs/ngram/wikitext2-kn$$order && \
	  $(PYTHON) -m training.train_ngram --data $(DATA)/ptb --style ptb --order $$order --output runs/ngram/ptb-kn$$order || exit 1; \
	done

# The same network as the shipped word model trained with AWD-LSTM's regularisation (weight-dropped
# recurrent matrices, variational and embedding dropout, activation penalties) for 40 epochs: about
# 7 hours on 2 idle CPU cores, resumable (re-run after an interruption). The export goes beside the
# shipped models; copy it over weights/wikitext2-lstm only when its test perplexity is lower.
model-wikitext2-awd: $(call stamp,train)
	$(PYTHON) -m training.data fetch wikitext-2 --data-dir $(DATA)
	$(PYTHON) -m training.train_lm --data $(DATA)/wikitext-2 --level word --style wikitext --cell lstm \
	  --embedding-dim 256 --hidden-dim 512 --num-layers 2 --head adaptive --adaptive-cutoffs 2000 10000 \
	  --awd --weight-drop 0.3 --input-dropout 0.4 --hidden-dropout 0.25 --dropout 0.4 --embedding-dropout 0.1 \
	  --activation-penalty 2 --temporal-penalty 1 \
	  --optimizer adamw --lr 2e-3 --weight-decay 0.01 --schedule cosine --batch-size 32 --bptt 70 --clip 0.25 \
	  --epochs 40 --patience 8 --weights-dtype float16 --checkpoint-every 200 \
	  --example-prompt "The game was released in" --run-dir runs/wikitext2-awd --export-dir runs/models/wikitext2-awd-lstm

# A SentencePiece LSTM on WikiText-2: 8,000 unigram pieces learnt from the training split, then
# a tied 2x512 LSTM over them, 3 epochs (10 to 40 minutes an epoch on 2 CPU cores, depending on
# what else runs; resumable).
# Not shipped (12 MB of weights): serve it with RNNSERVE_MODELS_DIR=runs/models.
model-wikitext2-pieces: $(call stamp,train)
	$(PYTHON) -m training.data fetch wikitext-2 --data-dir $(DATA)
	$(PYTHON) -m training.train_lm --data $(DATA)/wikitext-2 --level sentencepiece --max-vocab 8000 --style wikitext \
	  --cell lstm --embedding-dim 256 --hidden-dim 512 --num-layers 2 --dropout 0.3 --embedding-dropout 0.1 --tie-weights \
	  --optimizer adamw --lr 2e-3 --weight-decay 0.01 --schedule cosine --batch-size 32 --bptt 70 --clip 0.25 \
	  --epochs 3 --patience 3 --weights-dtype float16 --checkpoint-every 200 --threads 2 \
	  --example-prompt "The game was released in" --run-dir runs/wt2-pieces --export-dir runs/models/wikitext2-pieces-lstm

# The cell comparison on PTB: KN 3/5-gram, Elman RNN, GRU, LSTM at ~4M parameters each
# (about 35 minutes on 2 CPU cores; resumable).
compare-cells: $(call stamp,train)
	$(PYTHON) -m training.data fetch ptb --data-dir $(DATA)
	$(PYTHON) -m training.compare_cells --data $(DATA)/ptb --style ptb --params 4000000 --epochs 4 \
	  --run-dir runs/compare-ptb

# The speech n-best set: WikiText-2 and PTB valid/test sentences read by Festival's slt HTS
# voice and decoded by pocketsphinx (its US English acoustic model, dictionary and language
# model) into 10-best lists, 150 utterances per split: about 1.3 s an utterance on an idle core,
# 5 s on 2 busy ones (about 12 minutes per split with --workers 1 there). Resumable.
NBEST_UTTERANCES ?= 150
nbest: $(call stamp,speech)
	$(PYTHON) -m training.data fetch ptb wikitext-2 --data-dir $(DATA)
	tests/system_services.sh
	mkdir -p runs/nbest
	$(PYTHON) -m training.make_nbest --data $(DATA)/ptb/ptb.valid.txt --style ptb --utterances $(NBEST_UTTERANCES) --output runs/nbest/ptb-dev.jsonl
	$(PYTHON) -m training.make_nbest --data $(DATA)/ptb/ptb.test.txt --style ptb --utterances $(NBEST_UTTERANCES) --output runs/nbest/ptb-test.jsonl
	$(PYTHON) -m training.make_nbest --data $(DATA)/wikitext-2/valid.txt --style wikitext --utterances $(NBEST_UTTERANCES) --output runs/nbest/wikitext2-dev.jsonl
	$(PYTHON) -m training.make_nbest --data $(DATA)/wikitext-2/test.txt --style wikitext --utterances $(NBEST_UTTERANCES) --output runs/nbest/wikitext2-test.jsonl

# The WER table of docs/rescoring.md: weights tuned on each dev set, WER on its test set, MAP and
# MBR. Needs `make nbest` and the in-domain PTB 5-gram (`make model-ngram`); recogniser-lm and
# wikitext2-lstm ship in weights/. recogniser-lm with ptb-kn5 is the log-linear mixture (both
# weights tuned).
RESCORE = RNNSERVE_MODELS_DIR=runs/ngram $(PYTHON) -m training.tune_rescoring
rescoring: $(call stamp,train)
	for corpus in ptb wikitext2; do \
	  for model in wikitext2-lstm recogniser-lm ptb-kn5; do \
	    $(RESCORE) --nbest runs/nbest/$$corpus-dev.jsonl --model $$model --eval runs/nbest/$$corpus-test.jsonl \
	      --output runs/nbest/$$corpus-$$model.json || exit 1; \
	  done; \
	  $(RESCORE) --nbest runs/nbest/$$corpus-dev.jsonl --model recogniser-lm --model ptb-kn5 \
	    --eval runs/nbest/$$corpus-test.jsonl --output runs/nbest/$$corpus-recogniser-lm+ptb-kn5.json || exit 1; \
	  $(RESCORE) --nbest runs/nbest/$$corpus-dev.jsonl --model recogniser-lm --model ptb-kn5 --scale-objective mbr \
	    --eval runs/nbest/$$corpus-test.jsonl --output runs/nbest/$$corpus-recogniser-lm+ptb-kn5-mbr.json || exit 1; \
	done

# The rescoring model /v1/rescore uses by default: WikiText-2 and PTB train text in a speech
# recogniser's form (lower case, no punctuation, numbers spelled out, one sentence a line;
# `--text-normalization recogniser`, recorded in its config.json), 16,000 words, a 1x256 LSTM
# with an adaptive softmax, one epoch (15 to 30 minutes on 2 busy CPU cores; resumable).
model-rescoring: $(call stamp,train)
	$(PYTHON) -m training.data fetch wikitext-2 ptb --data-dir $(DATA)
	$(PYTHON) -m training.train_lm --data $(DATA)/wikitext-2 --style wikitext --extra-data $(DATA)/ptb:ptb \
	  --text-normalization recogniser --level word --max-vocab 16000 --cell lstm --embedding-dim 128 --hidden-dim 256 \
	  --num-layers 1 --dropout 0.25 --embedding-dropout 0.05 --head adaptive --adaptive-cutoffs 2000 6000 \
	  --optimizer adamw --lr 3e-3 --weight-decay 0.01 --schedule cosine --batch-size 64 --bptt 35 --clip 0.25 \
	  --epochs 1 --patience 3 --weights-dtype float16 --checkpoint-every 100 --threads 1 \
	  --example-prompt "the company said" --run-dir runs/recogniser-lm --export-dir weights/recogniser-lm

# An in-domain recurrent model of PTB (not shipped): 2x512 LSTM, 5 epochs (about 35
# minutes on 2 CPU cores; resumable).
model-ptb: $(call stamp,train)
	$(PYTHON) -m training.data fetch ptb --data-dir $(DATA)
	$(PYTHON) -m training.train_lm --data $(DATA)/ptb --style ptb --cell lstm --embedding-dim 256 --hidden-dim 512 \
	  --num-layers 2 --head adaptive --adaptive-cutoffs 2000 --dropout 0.4 --embedding-dropout 0.1 --optimizer adamw \
	  --lr 2e-3 --weight-decay 0.01 --schedule cosine --epochs 5 --batch-size 32 --bptt 35 --weights-dtype float16 \
	  --example-prompt "the company said" --run-dir runs/ptb-lstm --export-dir runs/models/ptb-lstm

clean:
	rm -rf $(VENV) .pytest_cache
