# hpe: every thesis experiment is one target.  `make help` lists them.
# DATA=synthetic (default: embedded generator, CPU-sized) or DATA=nyu NYU_ROOT=/path/to/nyu_hand_dataset_v2
SHELL := /bin/bash
.DELETE_ON_ERROR:
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
ifeq ($(VENV),none)
  # No virtual environment: $(PYTHON)'s own packages (a GPU machine with torch preinstalled, a conda env, the tests).
  PY := PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(PYTHON)
  INSTALLED := deps-check
else
  PY := $(VENV)/bin/python
  INSTALLED := $(VENV)/.installed
endif
HPE := $(PY) -m hpe
DATA ?= synthetic
PROFILE ?= thesis
SYNTH_TRAIN ?= 1800
SYNTH_TEST ?= 600
DATA_DIR ?= data
RESULTS ?= results
# Figures are drawn at their printed size: FIG_WIDTH=text (6.3 in) or column (3.3 in), fonts 7-9 pt at it.
FIG_WIDTH ?= text

ifeq ($(DATA),nyu)
  ifeq ($(strip $(NYU_ROOT)),)
    $(error DATA=nyu needs NYU_ROOT=/path/to/the/NYU/dataset (holding train/ and test/))
  endif
  ROOT := $(NYU_ROOT)
  ROOT_STAMP := $(NYU_ROOT)/test/joint_data.mat
  PRESET ?= experiments/presets/nyu.toml
else
  ROOT := $(DATA_DIR)/synthetic
  ROOT_STAMP := $(DATA_DIR)/synthetic/hpe_synthetic.json
  PRESET ?= experiments/presets/synthetic.toml
endif
H5 := $(DATA_DIR)/$(DATA)-$(PROFILE).h5
# Runs are kept per data, profile and preset: switching PRESET= never reuses another preset's runs.
RUNS := $(RESULTS)/runs/$(DATA)-$(PROFILE)/$(basename $(notdir $(PRESET)))
OUT := $(DATA)-$(PROFILE)-$(basename $(notdir $(PRESET)))
# A run depends on its experiment file, the preset and the data; a changed one restarts it (same ones resume).
TRAIN = $(HPE) train $< --preset $(PRESET) --data $(H5) --out $(@D) --resume --restart-if-changed \
  --progress epochs --set profile=$(PROFILE)

.PHONY: help demo test test-all coverage mutation venv deps-check data prep bench gpu-check search sweep-fusion leaderboard clean \
        clean-results reproduce-all reproduce-fig4.1 reproduce-table4.3 reproduce-fig4.7 reproduce-fig4.8 \
        reproduce-fig4.9 reproduce-fig4.10 predict-models reproduce-centres

help:
	@echo "make demo                 set up, generate + prep synthetic data, train Depth-Net, draw figures"
	@echo "make test                 unit + short end-to-end tests under coverage, with its floors (what CI runs)"
	@echo "make coverage             the same, by its name: the per-module table of lines and branches run"
	@echo "make mutation             mutation testing of the numeric core (mutmut; slow, not in CI)"
	@echo "make reproduce-table4.3   Net1-Net9 (table 4.3)"
	@echo "make reproduce-fig4.1     figures 4.1/4.2 for the real NYU sample frame and a DATA frame"
	@echo "make reproduce-fig4.7     Depth-Net vs RGB-Net, RGBD-Net, FusePred-Net, Fuse-Net"
	@echo "make reproduce-fig4.8     Fuse-Net's four fusion functions"
	@echo "make reproduce-fig4.9     Depth-Net and Fuse-Net vs the published baselines"
	@echo "make reproduce-fig4.10    qualitative results (figures 4.10 and 4.11)"
	@echo "make reproduce-all        all of the above"
	@echo "make predict-models       the pose and centre nets hpe predict uses on unlabelled frames"
	@echo "make reproduce-centres    README's table: hand centres without labels and what they cost"
	@echo "make leaderboard          your runs among every NYU result of the evaluation kit (fetched)"
	@echo "make sweep-fusion         Fuse-Net fused at every layer"
	@echo "make search               random-search hyperparameter optimisation"
	@echo "make bench                speed benchmark (JSON)"
	@echo "make rehearsal            NYU-size dress rehearsal: generation, prep, load memory, full-size CPU steps"
	@echo "make gpu-check            bench + reference vs fast Depth-Net training, collected in CHECK_OUT"
	@echo "options: DATA=synthetic|nyu NYU_ROOT=... PROFILE=thesis|icip2018 PRESET=experiments/presets/....toml"
	@echo "         VENV=none: use \$$PYTHON's installed packages instead of .venv"

# --- environment ---------------------------------------------------------------------------------------
venv: $(INSTALLED)
# pip -q is silent for half a minute while it unpacks torch: a line every 10 s says the step is alive.
ALIVE = ( while sleep 10; do echo "   ... $(1) ($$(( $$(date +%s) - t0 )) s)"; done ) & alive=$$!; \
  trap 'kill $$alive 2>/dev/null' EXIT
$(VENV)/.installed: pyproject.toml setup.py
	@echo "== creating $(VENV): pip, $(TORCH_SPEC), hpe and its test tools (about 1-2 minutes)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@t0=$$(date +%s); $(call ALIVE,installing into $(VENV)); set -e; \
	  echo "$(VENV)/bin/pip install -q --upgrade pip"; $(VENV)/bin/pip install -q --upgrade pip; \
	  echo "$(VENV)/bin/pip install -q \"$(TORCH_SPEC)\""; $(VENV)/bin/pip install -q "$(TORCH_SPEC)"; \
	  echo "$(VENV)/bin/pip install -q -e \".[test]\""; $(VENV)/bin/pip install -q -e ".[test]"
	touch $@
deps-check:
	@$(PYTHON) -c "import torch, numpy, scipy, h5py, matplotlib, PIL, imagecodecs, tqdm" || \
	  { echo "error: VENV=none needs torch, numpy, scipy, h5py, matplotlib, Pillow, imagecodecs and tqdm in $(PYTHON)"; exit 2; }

# --- data: Make chains the two data_prep/ scripts ------------------------------------------------------
# Each step says what it does; synth and prep print a progress line every 10 s when not on a terminal.
$(DATA_DIR)/synthetic/hpe_synthetic.json: | $(INSTALLED)
	@echo "== generating $(SYNTH_TRAIN) + $(SYNTH_TEST) synthetic NYU-format frames into $(DATA_DIR)/synthetic"
	$(PY) data_prep/synthetic_nyu.py $(DATA_DIR)/synthetic --train $(SYNTH_TRAIN) --test $(SYNTH_TEST)

data: $(ROOT_STAMP)
prep: $(H5)
$(H5): $(ROOT_STAMP) | $(INSTALLED)
	@echo "== cropping and normalising $(ROOT) into $@ (profile $(PROFILE))"
	$(PY) data_prep/nyu_to_hdf5.py $(ROOT) $@ --profile $(PROFILE)

# --- table 4.3 -----------------------------------------------------------------------------------------
NETS := net1 net2 net3 net4 net5 net6 net7 net8 net9
$(RUNS)/table4.3/%/result.json: experiments/table4.3/%.toml $(PRESET) $(H5)
	$(TRAIN)

reproduce-table4.3: $(foreach n,$(NETS),$(RUNS)/table4.3/$(n)/result.json)
	$(HPE) figure table4.3 --width $(FIG_WIDTH) --out $(RESULTS)/reproduce-table4.3/$(OUT)/table4.3 \
	  $(foreach n,$(NETS),--method $(n)=$(RUNS)/table4.3/$(n))

# --- figures 4.1 / 4.2 ---------------------------------------------------------------------------------
# The real NYU frame's RGB panel is standardised with real statistics: the NYU training set's, or the frame's own.
REAL_STATS := $(if $(filter nyu,$(DATA)),--stats $(H5))
reproduce-fig4.1: $(H5)
	$(HPE) figure frame --width $(FIG_WIDTH) --title "NYU test frame 1 (real)" $(REAL_STATS) \
	  --out $(RESULTS)/reproduce-fig4.1/$(DATA)-$(PROFILE)/nyu-test-frame1
	$(HPE) figure frame --width $(FIG_WIDTH) --depth $(ROOT)/test/depth_1_0000001.png --rgb $(ROOT)/test/rgb_1_0000001.png \
	  --joints-mat $(ROOT)/test/joint_data.mat --frame 1 --stats $(H5) --title "$(DATA) test frame 1" \
	  --out $(RESULTS)/reproduce-fig4.1/$(DATA)-$(PROFILE)/$(DATA)-test-frame1

# --- figures 4.7 / 4.8 ---------------------------------------------------------------------------------
FUNCS := max sum cat conv
$(RUNS)/fig4.7/%/result.json: experiments/fig4.7/%.toml $(PRESET) $(H5)
	$(TRAIN)
$(RUNS)/fig4.8/%/result.json: experiments/fig4.8/%.toml $(PRESET) $(H5)
	$(TRAIN)
# FusePred-Net as fusepred.toml's [fusepred] training says for the profile: thesis fuses the two runs above
# (independent), icip2018 trains one net of both streams on the loss of their average (joint, the author's code).
$(RUNS)/fig4.7/fusepred/result.json: experiments/fig4.7/fusepred.toml $(RUNS)/fig4.7/depthnet/result.json \
                                     $(RUNS)/fig4.7/rgbnet/result.json $(PRESET) $(H5)
	$(HPE) fusepred $< --depth-run $(RUNS)/fig4.7/depthnet --rgb-run $(RUNS)/fig4.7/rgbnet --out $(@D) \
	  --data $(H5) --preset $(PRESET) --set profile=$(PROFILE) --resume --restart-if-changed

FIG47 := depthnet rgbnet rgbdnet fusepred
reproduce-fig4.7: $(foreach m,$(FIG47),$(RUNS)/fig4.7/$(m)/result.json) $(RUNS)/fig4.8/fusenet-conv/result.json
	$(HPE) figure compare --width $(FIG_WIDTH) --gt $(H5) --title "Figure 4.7: fusion approaches vs Depth-Net ($(DATA))" \
	  --out $(RESULTS)/reproduce-fig4.7/$(OUT)/fig4.7 \
	  --method Depth-Net=$(RUNS)/fig4.7/depthnet --method RGB-Net=$(RUNS)/fig4.7/rgbnet \
	  --method RGBD-Net=$(RUNS)/fig4.7/rgbdnet --method FusePred-Net=$(RUNS)/fig4.7/fusepred \
	  --method Fuse-Net=$(RUNS)/fig4.8/fusenet-conv

reproduce-fig4.8: $(foreach f,$(FUNCS),$(RUNS)/fig4.8/fusenet-$(f)/result.json)
	$(HPE) figure compare --width $(FIG_WIDTH) --gt $(H5) --title "Figure 4.8: Fuse-Net fusion functions ($(DATA))" \
	  --out $(RESULTS)/reproduce-fig4.8/$(OUT)/fig4.8 \
	  $(foreach f,$(FUNCS),--method $(f)=$(RUNS)/fig4.8/fusenet-$(f))

# --- figure 4.9: against the published baselines on the real NYU test set (bundled with hpe) ------------
THESIS_BASELINES := --bundled DeepPrior --bundled DeepPrior-Refine --bundled Feedback --bundled DeepModel
ifeq ($(DATA),nyu)
OURS_DEPS := $(RUNS)/fig4.7/depthnet/result.json $(RUNS)/fig4.8/fusenet-conv/result.json
OURS := --method Depth-Net=$(RUNS)/fig4.7/depthnet --method Fuse-Net=$(RUNS)/fig4.8/fusenet-conv
FIG49_TOMPSON := --tompson bundled --depth-dir $(NYU_ROOT)/test
else
OURS_DEPS :=
OURS := --note "Depth-Net and Fuse-Net are not shown: runs trained on synthetic data cannot be scored against the real NYU ground truth (DATA=nyu NYU_ROOT=...)."
FIG49_TOMPSON := --note "Tompson et al. is not shown: lifting its 2D predictions to 3D needs the NYU test depth images (DATA=nyu NYU_ROOT=...)."
endif
reproduce-fig4.9: $(OURS_DEPS) | $(INSTALLED)
	$(HPE) figure compare --width $(FIG_WIDTH) --title "Figure 4.9: comparison with the state of the art (NYU test set)" \
	  --out $(RESULTS)/reproduce-fig4.9/$(OUT)/fig4.9 $(OURS) $(FIG49_TOMPSON) $(THESIS_BASELINES)

# --- figures 4.10 / 4.11 -------------------------------------------------------------------------------
reproduce-fig4.10: $(RUNS)/fig4.7/depthnet/result.json
	$(HPE) figure qualitative --width $(FIG_WIDTH) --run $(RUNS)/fig4.7/depthnet --data $(H5) --out $(RESULTS)/reproduce-fig4.10/$(OUT)/depthnet

reproduce-all: reproduce-fig4.1 reproduce-table4.3 reproduce-fig4.7 reproduce-fig4.8 reproduce-fig4.9 reproduce-fig4.10

# --- hpe predict: the runs it uses on unlabelled frames, and README's table of hand centres -----------------
# A pose net trained with centre jitter, a coarse centre net on a context file (the same frames cropped with a
# CONTEXT_CUBE mm cube: the hand with its forearm, head and body) and a fine centre net on the usual crops.
CONTEXT_CUBE ?= 600
CONTEXT_H5 := $(DATA_DIR)/$(DATA)-$(PROFILE)-context$(CONTEXT_CUBE).h5
PREDICT_RUNS := $(RUNS)/predict
$(CONTEXT_H5): $(ROOT_STAMP) | $(INSTALLED)
	@echo "== cropping $(ROOT) with a $(CONTEXT_CUBE) mm context cube into $@"
	$(PY) data_prep/nyu_to_hdf5.py $(ROOT) $@ --profile $(PROFILE) --cube $(CONTEXT_CUBE) \
	  --cube-subject2 $(CONTEXT_CUBE)
$(PREDICT_RUNS)/centrenet-context/result.json: experiments/predict/centrenet-context.toml $(PRESET) $(CONTEXT_H5)
	$(subst --data $(H5),--data $(CONTEXT_H5),$(TRAIN))
$(PREDICT_RUNS)/%/result.json: experiments/predict/%.toml $(PRESET) $(H5)
	$(TRAIN)

PREDICT_MODELS := depthnet-jitter centrenet-context centrenet
predict-models: $(foreach m,$(PREDICT_MODELS),$(PREDICT_RUNS)/$(m)/result.json)
	@echo "predict with: hpe predict FRAMES... --run $(PREDICT_RUNS)/depthnet-jitter --out DIR"
	@echo "  --centre-run $(PREDICT_RUNS)/centrenet-context --centre-run $(PREDICT_RUNS)/centrenet"
# The centre design was chosen while looking at the synthetic test table; a second synthetic test set with a seed
# and a hand size never used in development (between the two subjects' 1.0 and 0.87) confirms it (README).
HELDOUT_SEED ?= 2027
HELDOUT_SCALE ?= 0.935
ifeq ($(DATA),nyu)
HELDOUT_STAMP :=
HELDOUT_ARGS :=
else
HELDOUT_ROOT := $(DATA_DIR)/synthetic-heldout-seed$(HELDOUT_SEED)-hand$(HELDOUT_SCALE)
HELDOUT_STAMP := $(HELDOUT_ROOT)/hpe_synthetic.json
HELDOUT_ARGS := --held-out-root $(HELDOUT_ROOT)
$(HELDOUT_STAMP): | $(INSTALLED)
	@echo "== generating the held-out synthetic test set (seed $(HELDOUT_SEED), hand $(HELDOUT_SCALE)) into $(HELDOUT_ROOT)"
	$(PY) data_prep/synthetic_nyu.py $(HELDOUT_ROOT) --train 1 --test $(SYNTH_TEST) --seed $(HELDOUT_SEED) \
	  --subject2-scale $(HELDOUT_SCALE)
endif
reproduce-centres: predict-models $(HELDOUT_STAMP)
	$(HPE) figure centres --width $(FIG_WIDTH) --run $(PREDICT_RUNS)/depthnet-jitter \
	  --centre-run $(PREDICT_RUNS)/centrenet-context --centre-run $(PREDICT_RUNS)/centrenet --root $(ROOT) \
	  $(HELDOUT_ARGS) --out $(RESULTS)/reproduce-centres/$(OUT)/centres

# --- the whole NYU field: the evaluation kit's result files, fetched and verified ------------------------
KIT_DIR ?= $(DATA_DIR)/kit
KIT_MIRROR ?=
leaderboard: $(OURS_DEPS) | $(INSTALLED)
	$(HPE) baselines fetch --dest $(KIT_DIR) $(if $(KIT_MIRROR),--mirror $(KIT_MIRROR)) --quiet
	$(HPE) figure compare --width $(FIG_WIDTH) --leaderboard --baselines $(KIT_DIR) $(OURS) \
	  --title "NYU test set: $(if $(filter nyu,$(DATA)),our runs among ,)the evaluation kit's methods" \
	  --out $(RESULTS)/leaderboard/$(OUT)/leaderboard

# --- demo: the main job end to end on the synthetic data -----------------------------------------------
demo: reproduce-fig4.1 $(RUNS)/fig4.7/depthnet/result.json reproduce-fig4.10
	$(HPE) figure compare --width $(FIG_WIDTH) --gt $(H5) --title "Depth-Net on $(DATA) data" \
	  --out $(RESULTS)/demo/$(OUT)/depthnet --method Depth-Net=$(RUNS)/fig4.7/depthnet
	@$(PY) -c "import json; r = json.load(open('$(RUNS)/fig4.7/depthnet/result.json')); \
	  print(f\"Depth-Net: test mean joint error {r['test_mean_mm']:.2f} mm vs {r['mean_pose_mm']:.2f} mm for the mean training pose ({r['epochs']} epochs, {r['seconds']:.0f} s on {r['device']})\")"
	@echo "figures: $(RESULTS)/reproduce-fig4.1/ $(RESULTS)/reproduce-fig4.10/ $(RESULTS)/demo/"

# --- other jobs ----------------------------------------------------------------------------------------
SWEEP_FUNCTION ?= conv
sweep-fusion: experiments/fig4.8/fusenet-$(SWEEP_FUNCTION).toml $(PRESET) $(H5)
	$(HPE) sweep-fusion $< --preset $(PRESET) --data $(H5) --out $(RUNS)/sweep-fusion-$(SWEEP_FUNCTION) \
	  --quiet --set profile=$(PROFILE)

SEARCH_ARGS ?=
search: experiments/fig4.7/depthnet.toml $(PRESET) $(H5)
	$(HPE) search $< --preset $(PRESET) --data $(H5) --out $(RUNS)/search --set profile=$(PROFILE) $(SEARCH_ARGS)

bench: | $(INSTALLED)
	@$(HPE) bench

# The speed check of README "Speed", made to run in one call on a lent GPU (`make gpu-check VENV=none
# CHECK_OUT=$$OUT SYNTH_TRAIN=6000`): the benchmark with an operator profile, then Figure 4.7's Depth-Net trained
# for CHECK_EPOCHS epochs twice with the same seed on $(H5): CHECK_PRESET as it is (the fp32 eager reference)
# and with CHECK_FAST_SET's switches (the fast path).  Everything lands in CHECK_OUT; summary.txt says it all.
CHECK_OUT ?= $(RESULTS)/gpu-check
CHECK_EPOCHS ?= 30
CHECK_PRESET ?= experiments/presets/nyu.toml
CHECK_FAST_SET ?= precision=bf16 channels_last=True tf32=True cudnn_benchmark=True compile=True
CHECK_RUNS := $(RESULTS)/runs/gpu-check-$(DATA)-$(PROFILE)
# CHECK_BENCH_ARGS: e.g. --size tiny (the tests) or --size quick, the benchmark at reduced size.
CHECK_BENCH_ARGS ?=
gpu-check: $(H5) | $(INSTALLED)
	mkdir -p $(CHECK_OUT)
	$(HPE) bench --profile-ops $(CHECK_BENCH_ARGS) --json $(CHECK_OUT)/bench.json > /dev/null
	for mode in reference fast; do \
	  sets="--set profile=$(PROFILE) --set max_epochs=$(CHECK_EPOCHS) --set require_learning=false"; \
	  [ $$mode = fast ] && sets="$$sets $(foreach s,$(CHECK_FAST_SET),--set $(s))"; \
	  rm -rf $(CHECK_RUNS)/$$mode; \
	  $(HPE) train experiments/fig4.7/depthnet.toml --preset $(CHECK_PRESET) --data $(H5) \
	    --out $(CHECK_RUNS)/$$mode --progress epochs $$sets || exit 1; \
	  cp $(CHECK_RUNS)/$$mode/result.json $(CHECK_OUT)/$$mode-result.json; \
	  cp $(CHECK_RUNS)/$$mode/log.csv $(CHECK_OUT)/$$mode-log.csv; \
	done
	$(HPE) bench --report $(CHECK_OUT) | tee $(CHECK_OUT)/summary.txt

# --- the NYU-size dress rehearsal (README "Scale"): synthetic data of NYU's sizes, prepped in both profiles at
# the preset's input size, then loading and full-size CPU training steps measured into REHEARSAL_OUT and the README
# table.  With fewer REHEARSAL_TRAIN frames than NYU's 72,757 the prepared files are tiled up to NYU's split
# sizes for the loading and step measurements (the JSON says so).  REHEARSAL_BASELINE_COMMIT=0edfcca also times
# generation against that commit's generator.  The data it writes into REHEARSAL_DIR (~16 GB of PNGs, 6.7 GB per
# HDF5 file at NYU size) is deleted at the end unless REHEARSAL_KEEP=1; other files there are left alone.  The
# results are gathered in REHEARSAL_DIR and copied to REHEARSAL_OUT only when the whole rehearsal has run, so an
# interrupted run never leaves a results file mixing two runs.
REHEARSAL_TRAIN ?= 72757
REHEARSAL_TEST ?= 8252
REHEARSAL_DIR ?= $(DATA_DIR)/rehearsal
REHEARSAL_OUT ?= $(RESULTS)/scale/nyu-size.json
REHEARSAL_PRESET ?= experiments/presets/nyu.toml
REHEARSAL_BASELINE_COMMIT ?=
REHEARSAL_STEPS ?= 3
REHEARSAL_KEEP ?=
# The README's table is rewritten only from the committed results file of a run at NYU's sizes.
REHEARSAL_README ?= $(if $(and $(filter $(RESULTS)/scale/nyu-size.json,$(REHEARSAL_OUT)),$(filter 72757,$(REHEARSAL_TRAIN)),$(filter 8252,$(REHEARSAL_TEST))),README.rst)
NICE ?= nice -n 10
REHEARSAL_PROFILES := thesis icip2018
.PHONY: rehearsal
rehearsal: | $(INSTALLED)
	set -e; d=$(REHEARSAL_DIR); mkdir -p $$d; r=$$d/results.json; rm -f $$r; \
	base=""; if [ -n "$(REHEARSAL_BASELINE_COMMIT)" ]; then \
	  git show $(REHEARSAL_BASELINE_COMMIT):hpe/synthetic.py > $$d/synthetic-baseline.py; base="--baseline $$d/synthetic-baseline.py"; fi; \
	test -f $$d/synthetic/hpe_synthetic.json || \
	  $(NICE) env $(HPE) synth $$d/synthetic --train $(REHEARSAL_TRAIN) --test $(REHEARSAL_TEST) --quiet; \
	$(NICE) env $(HPE) scale measure --out $$r --root $$d/synthetic --preset $(REHEARSAL_PRESET) \
	  --work $$d/work $$base $(foreach p,$(REHEARSAL_PROFILES),--h5 $(p)=$$d/$(p).h5) --only generation side-by-side prep; \
	for p in $(REHEARSAL_PROFILES); do \
	  h5=$$d/$$p.h5; \
	  if [ $(REHEARSAL_TRAIN) -lt 72757 ]; then $(NICE) env $(HPE) scale tile $$h5 $$d/$$p-nyu.h5; h5=$$d/$$p-nyu.h5; fi; \
	  $(NICE) env $(HPE) scale measure --out $$r --preset $(REHEARSAL_PRESET) --work $$d/work \
	    --h5 $$p=$$h5 --only load steps --steps $(REHEARSAL_STEPS); \
	  [ -n "$(REHEARSAL_KEEP)" ] || rm -f $$d/$$p-nyu.h5; \
	done; \
	mkdir -p $(dir $(REHEARSAL_OUT)); cp $$r $(REHEARSAL_OUT).tmp; mv $(REHEARSAL_OUT).tmp $(REHEARSAL_OUT); \
	$(HPE) scale table $(REHEARSAL_OUT) $(if $(REHEARSAL_README),--readme $(REHEARSAL_README)); \
	[ -n "$(REHEARSAL_KEEP)" ] || { rm -rf $$d/synthetic $$d/work $$d/synthetic-baseline.py $$r \
	  $(foreach p,$(REHEARSAL_PROFILES),$$d/$(p).h5 $$d/$(p)-nyu.h5); rmdir $$d 2>/dev/null || true; }

# `make test` runs the tests under coverage.py (`make coverage`) and fails below the floors; COVERAGE=0 runs plain
# pytest.  Coverage counts every Python process the tests start (pyproject.toml [tool.coverage.run]).  The floors
# are the measured coverage of the suite when they were set: raise them when coverage rises, never lower them.
# Measured 2026-12-04, clean clone, 2 idle cores, two xdist workers (544 tests): lines 92.7 %, branches 85.8 %;
# the floors sit half a point below for the run-to-run noise of processes the tests kill (hpe/scale.py, the
# NYU-size rehearsal tool, is 46 % covered: its measuring children run only in `make rehearsal`).
COVERAGE ?= 1
# Tests are dealt out to PYTEST_WORKERS processes (pytest-xdist; an idle worker steals queued tests, so one slow
# file does not leave the other worker waiting; a module's fixtures may then be built in both); 1 runs them in this
# process.  Measured with coverage on 2 idle cores: --dist worksteal 6 min 50 s, --dist loadfile 8 min 15 s, three
# loadfile workers 8 min 43 s.  Coverage follows the workers and every process they start (synth's and prep's pools
# close and join their workers, so none is terminated before it writes its data).
PYTEST_WORKERS ?= 2
PYTEST_ARGS := -q -m "not slow" $(if $(filter-out 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist worksteal)
COVERAGE_FLOOR_LINES ?= 91.5
COVERAGE_FLOOR_BRANCHES ?= 85
ifneq ($(filter 1 yes true on,$(COVERAGE)),)
test: coverage
else ifneq ($(filter 0 no false off,$(COVERAGE)),)
test: $(INSTALLED)
	$(PY) -m pytest $(PYTEST_ARGS)
else
test:
	@echo "error: COVERAGE=$(COVERAGE): give 1 (coverage and its floors, the default) or 0 (plain pytest)"; exit 2
endif

coverage: $(INSTALLED)
	@$(PY) -c "import coverage, pytest, xdist" 2>/dev/null || \
	  { echo "error: make test needs coverage, pytest and pytest-xdist: $(PY) -m pip install -e '.[test]'"; exit 2; }
	@$(PY) -c "import sys; sys.exit(not all(0 <= float(v) <= 100 for v in '$(COVERAGE_FLOOR_LINES)|$(COVERAGE_FLOOR_BRANCHES)'.split('|')))" 2>/dev/null || \
	  { echo "error: COVERAGE_FLOOR_LINES=$(COVERAGE_FLOOR_LINES) COVERAGE_FLOOR_BRANCHES=$(COVERAGE_FLOOR_BRANCHES): give numbers from 0 to 100 (percent, without the % sign), e.g. 91.5"; exit 2; }
	rm -f .coverage .coverage.* coverage.json
	$(PY) -m coverage run -m pytest $(PYTEST_ARGS)
	@$(PY) tests/coverage_data.py  # drops the unfinished data files of processes the tests kill with SIGKILL
	$(PY) -m coverage combine -q
	$(PY) -m coverage report
	$(PY) -m coverage json -q -o coverage.json
	@$(PY) -c "import json, sys; t = json.load(open('coverage.json'))['totals']; \
	  lines, branches = 100 * t['covered_lines'] / t['num_statements'], 100 * t['covered_branches'] / t['num_branches']; \
	  print(f'coverage: lines {lines:.2f}% (floor $(COVERAGE_FLOOR_LINES)%), branches {branches:.2f}% (floor $(COVERAGE_FLOOR_BRANCHES)%)'); \
	  low = [f'{k} {v:.2f}% < {f}%' for k, v, f in (('lines', lines, $(COVERAGE_FLOOR_LINES)), ('branches', branches, $(COVERAGE_FLOOR_BRANCHES))) if v < f]; \
	  low and print('error: coverage below its floor: ' + ', '.join(low) + ' (a test no longer runs, or new code has none)'); \
	  sys.exit(bool(low))"

test-all: $(INSTALLED)
	$(PY) -m pytest -q

clean-results:
	rm -rf $(RESULTS)/runs $(RESULTS)/reproduce-* $(RESULTS)/demo $(RESULTS)/leaderboard
clean: clean-results
	rm -rf $(DATA_DIR)

# Mutation testing of the numeric core (not in CI; README "Testing"): mutmut mutates these functions in a copy of
# hpe (mutants/) and runs, per mutant, only the fast unit tests that reach it (pyproject.toml [tool.mutmut]);
# tests/mutation_report.py writes $(RESULTS)/mutation.json.  mutmut runs without PYTHONPATH, so that the tests
# import the mutated copy.
MUTANTS := "hpe.camera.*" "hpe.metrics.*" "hpe.optim.*" "hpe.train.x_next_state__*" "hpe.prep.x_validation_mask__*" \
  "hpe.evaluate.x__implausible__*" "hpe.evaluate.x_load_method__*" "hpe.evaluate.x_summaries__*" \
  $(foreach f,normalise_joints denormalise_joints crop_box paste_geometry crop_hand hand_mask standardise_rgb,"hpe.crop.x_$(f)__*")
MUTMUT := $(if $(filter none,$(VENV)),$(PYTHON),$(VENV)/bin/python)
mutation: $(INSTALLED)
	@$(MUTMUT) -c "import mutmut" 2>/dev/null || { echo "make mutation needs mutmut: $(MUTMUT) -m pip install -e '.[mutation]'"; exit 2; }
	rm -rf mutants
	start=$$(date +%s); HYPOTHESIS_PROFILE=mutation nice -n 10 $(MUTMUT) -m mutmut run $(MUTANTS) > mutants.log 2>&1 || \
	  { tail -20 mutants.log; exit 1; }; \
	$(MUTMUT) tests/mutation_report.py --seconds $$(( $$(date +%s) - start )) --out $(RESULTS)/mutation.json $(MUTANTS)
