# Course package: every target creates the environment first when it is missing.
#   make book      build the executed website into _build/html (fails on any warning)
#   make test [TEST_WORKERS=2]   run the whole test suite (pytest-xdist workers side by side; 1 = in one process)
#   make release [PUBLISH=1] [EXCHANGE=dir]   regenerate notebooks/ (student versions) from solutions/;
#                  PUBLISH=1 also releases them into the nbgrader exchange (default autograder/course/exchange)
#   make collect ASSIGNMENT=name [EXCHANGE=dir]   the latest submission of each student from the exchange
#   make grade ASSIGNMENT=name   (no SUBMISSIONS) grades what make collect collected; students the gradebook knows
#                  who handed nothing in are `missing`
#   make feedback ASSIGNMENT=name [EXCHANGE=dir]   release the feedback pages into the exchange (students fetch them)
#   make grade SUBMISSIONS=DIR|download.zip [ASSIGNMENT=name] [ROSTER=roster.csv] [KERNEL=kernelspec] [SANDBOX=0] [WORKERS=N | SCHEDULER=tcp://host:8786] [DB=postgresql+psycopg://...] [SIMILARITY=0.6|off]   autograde a class, write feedback and grades CSV
#                  (each kernel sandboxed in bubblewrap by default, KERNEL too; SANDBOX=0 runs student code unconfined;
#                  copy detection flags similar solutions for review, report in autograder/course/similarity/)
#                  (WORKERS=N: a Dask LocalCluster of N worker processes; SCHEDULER: the workers of a running Dask cluster)
#   make grade-worker SCHEDULER=tcp://host:8786 [WORKERS=N]   on each grading machine: N Dask workers for make grade SCHEDULER=...
#   make grade-manual [ASSIGNMENT=name]   list the written answers still to grade by hand
#   make grade-manual STUDENT=id ASSIGNMENT=name CELL=grade_id POINTS=n [COMMENT=text]   record one (grades.csv and feedback follow)
#   make grade-manual SYNC=1 [ASSIGNMENT=name]   after grading in nbgrader's formgrader: grades.csv and feedback from the gradebook
#   make export-grades ASSIGNMENT=name [FORMAT=canvas|moodle|csv] [ROSTER=csv] [COLUMN=...]   grades for an LMS import
#   make lab       JupyterLab on the student notebooks (127.0.0.1 only)
#   make bench [QUICK=1]   flowlib vs zuko side by side + course costs -> bench/results.md (QUICK: tiny budgets -> _build/bench/results-quick.md)
#   make margins   every outcome threshold over 8 seeds x 1 and 2 threads vs a weaker model -> bench/outcome-margins.md

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

ASSIGNMENTS := $(notdir $(wildcard solutions/*))
ASSIGNMENT  ?=
SUBMISSIONS ?=
KERNEL      ?=
WORKERS     ?= 1
SCHEDULER   ?=
DB          ?=
SANDBOX     ?= 1
SIMILARITY  ?=
STUDENT     ?=
CELL        ?=
POINTS      ?=
COMMENT     ?=
SYNC        ?=
ROSTER      ?=
FORMAT      ?=
COLUMN      ?=
PUBLISH     ?=
EXCHANGE    ?=
OUT         ?=
TEST_WORKERS ?= 2

.PHONY: venv book test release collect feedback grade grade-worker grade-manual export-grades lab bench margins clean

venv: $(STAMP)

# Idempotent: re-runs only when the pins or the package metadata change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

book: $(STAMP)
	FLOWLIB_PROGRESS=0 $(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

release: $(STAMP)
	cd autograder && for asg in $(ASSIGNMENTS); do \
	  $(abspath $(BIN))/nbgrader generate_assignment "$$asg" --force || exit 1; done
ifeq ($(PUBLISH),1)
	cd autograder && for asg in $(ASSIGNMENTS); do \
	  FLOWLIB_EXCHANGE="$(EXCHANGE)" $(abspath $(BIN))/nbgrader release_assignment "$$asg" --force || exit 1; done
endif

# The exchange's latest submission per student, with nbgrader's timestamps, into
# autograder/course/collected/ (graded by `make grade ASSIGNMENT=...` without SUBMISSIONS).
collect: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make collect ASSIGNMENT=name [EXCHANGE=dir]"; exit 2; }
	cd autograder && FLOWLIB_EXCHANGE="$(EXCHANGE)" $(abspath $(BIN))/nbgrader collect "$(ASSIGNMENT)" --update \
	  --CourseDirectory.submitted_directory=autograder/course/collected

# Each graded student's feedback page into the exchange: the Assignment List's "Fetch Feedback".
feedback: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make feedback ASSIGNMENT=name [EXCHANGE=dir]"; exit 2; }
	cd autograder && FLOWLIB_EXCHANGE="$(EXCHANGE)" $(abspath $(BIN))/nbgrader release_feedback "$(ASSIGNMENT)" \
	  --CourseDirectory.submitted_directory=autograder/course/collected

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)$(ASSIGNMENT)" || { echo "usage: make grade SUBMISSIONS=DIR [ASSIGNMENT=name], or make grade ASSIGNMENT=name after make collect"; exit 2; }
	$(BIN)/python autograder/grade.py $(if $(SUBMISSIONS),"$(SUBMISSIONS)") $(if $(ASSIGNMENT),--assignment "$(ASSIGNMENT)") $(if $(KERNEL),--kernel "$(KERNEL)") $(if $(filter 0,$(SANDBOX)),--no-sandbox) --workers $(WORKERS) $(if $(SCHEDULER),--scheduler "$(SCHEDULER)") $(if $(DB),--db "$(DB)") $(if $(SIMILARITY),--similarity "$(SIMILARITY)") $(if $(ROSTER),--roster "$(ROSTER)")

# A Dask worker that grades students for `make grade SCHEDULER=...` (autograder/engine.py): it
# imports the course's autograder from this checkout and starts one process per student, so
# its processes are not daemonic.
grade-worker: $(STAMP)
	@test -n "$(SCHEDULER)" || { echo "usage: make grade-worker SCHEDULER=tcp://host:8786 [WORKERS=N]"; exit 2; }
	DASK_DISTRIBUTED__WORKER__DAEMON=False PYTHONPATH="$(abspath autograder)" $(BIN)/dask worker "$(SCHEDULER)" --nworkers $(WORKERS) --nthreads 1

grade-manual: $(STAMP)
	$(BIN)/python autograder/manual.py $(if $(DB),--db "$(DB)") $(if $(STUDENT),set "$(STUDENT)" "$(ASSIGNMENT)" "$(CELL)" "$(POINTS)" $(if $(COMMENT),--comment "$(COMMENT)"),$(if $(filter 1,$(SYNC)),sync,pending) $(if $(ASSIGNMENT),--assignment "$(ASSIGNMENT)"))

export-grades: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make export-grades ASSIGNMENT=name [FORMAT=canvas|moodle|csv] [ROSTER=roster.csv] [COLUMN='Canvas column'] [OUT=file]"; exit 2; }
	$(BIN)/python autograder/export_grades.py "$(ASSIGNMENT)" --format $(or $(FORMAT),csv) $(if $(ROSTER),--roster "$(ROSTER)") $(if $(COLUMN),--column "$(COLUMN)") $(if $(OUT),--out "$(OUT)")

lab: $(STAMP)
	$(BIN)/python autograder/student_lab/lab.py

bench: $(STAMP)
	$(BIN)/python bench/run.py $(if $(filter 1,$(QUICK)),--quick)

margins: $(STAMP)
	$(BIN)/python bench/margins.py

clean:
	rm -rf _build
