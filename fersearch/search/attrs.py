"""Every study and trial attribute key fersearch writes, in one place. The values are stored in
studies, so they never change; a new key is added here first.

Study user attributes (set once, by ``create``):"""

from __future__ import annotations

SPACE = "fersearch:space"  # the search space, as parsed
DATA = "fersearch:data"  # the DataConfig every trial trains on
BUDGET = "fersearch:n_trials"  # the study-wide trial budget
VERSION = "fersearch:version"  # the fersearch version that created the study
SEED_RECIPES = "fersearch:seed_recipes"  # the presets enqueued at creation
# --warm-start-from: {"study", "top", "trials"}: the source study and its trials enqueued at creation
WARM_START = "fersearch:warm_start"

# Trial user attributes, set by the worker that runs the trial:
CONFIG = "config"  # the resolved TrialConfig (JSON)
SEED = "seed"  # the training seed
CODE_VERSION = "code_version"
THREADS = "threads"  # torch threads it trained with (cpu_share)
CHECKPOINT_DIR = "checkpoint_dir"
UAR_PER_EPOCH = "uar_per_epoch"
WAR_PER_EPOCH = "war_per_epoch"
STAGE_PER_EPOCH = "stage_per_epoch"  # the curriculum stage of each epoch
BEST_EPOCH = "best_epoch"
SWA_VAL_UAR = "swa_val_uar"
WALL_SECONDS = "wall_seconds"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
PRUNED_AT_EPOCH = "pruned_at_epoch"
PRUNED_REASON = "pruned_reason"  # a pruned trial that diverged, or the Pareto search's UAR rule stopped: why
FAIL_REASON = "fail_reason"  # a failed trial: the error, one line
PRESET = "fersearch:preset"  # the seed recipe a trial runs
PRESET_SKIPPED = "preset_skipped"  # what of its recipe the study could not use, and why
# A warm-started trial (--warm-start-from): {"study", "trial", "value"} of the trial it repeats,
# and that trial's configuration (its tunable keys: the recipe it runs, like a preset's)
WARM_START_FROM = "warm_start_from"
WARM_START_RECIPE = "fersearch:warm_start_recipe"
# What a re-queued copy of a trial carries over so that it runs the same recipe
RECIPE_ATTRS = (PRESET, WARM_START_FROM, WARM_START_RECIPE)
SURPLUS = "fersearch:surplus"  # ended unrun: the budget filled as it started
# SIGINT/SIGTERM: the trial is failed and a copy queued to resume from its checkpoint
INTERRUPTED = "fersearch:interrupted"
INTERRUPTED_SIGNAL = "interrupted_signal"
INTERRUPTED_AT_EPOCH = "interrupted_at_epoch"
INTERRUPTED_AT_STEP = "interrupted_at_step"
INTERRUPTED_CHECKPOINT = "interrupted_checkpoint"
# On a queued copy (of an interrupted or stale trial): what it continues
RETRY_OF = "fersearch:retry_of"  # the number of the trial it copies
RESUME_FROM = "fersearch:resume_from"  # the checkpoint it resumes from
# (A copy carries the copied trial's SEED. Copies queued by earlier versions of fersearch
# carried it under this key instead; it is still read.)
OLD_RESUME_SEED = "fersearch:seed"

# Trial system attributes:
HEARTBEAT = "fersearch:heartbeat"  # time.time() of the worker's last beat (liveness.py)
RETRY_HISTORY = "retry_history"  # Optuna's: the trials a copy descends from
# deployment budgets (a space's deploy:, fersearch/search/deploy.py)
DEPLOY_COST = "deploy_cost"  # the model's measured latency and size, and what they hold for
INFEASIBLE = "fersearch:infeasible"  # over a budget: which figure, the budget, by how much
CONSTRAINTS = "fersearch:constraints"  # measured minus budget per figure (Optuna 4's samplers)
