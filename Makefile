# The two commands a newcomer needs:  make serve  and  make test.
# Both create .venv and install the project on first use; later runs skip the install
# unless pyproject.toml or constraints.txt changed.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000
SHARED  ?= $(abspath ../shared/data)
# NLTK's Punkt tables, when the shared data is beside the checkout (the tokenizer falls back
# to a regular-expression sentence splitter without them).
ifneq ($(wildcard $(SHARED)/nltk_data),)
export NLTK_DATA ?= $(SHARED)/nltk_data
endif

.PHONY: install serve test models model-char clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/uvicorn --factory app.main:create_app --host $(HOST) --port $(PORT) --no-access-log

test: $(STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# Rebuild the shipped character model from the shared data (about 50 minutes on 2 CPU cores).
model-char: $(STAMP)
	$(PYTHON) -m training.train_lm --data $(SHARED)/tinyshakespeare/input.txt --level char \
	  --embedding-dim 128 --hidden-dim 512 --num-layers 2 --dropout 0.2 --batch-size 32 --bptt 128 \
	  --lr 2e-3 --epochs 7 --patience 3 --weights-dtype float16 \
	  --run-dir runs/shakespeare-char --export-dir weights/shakespeare-char-lstm

clean:
	rm -rf $(VENV) .pytest_cache
