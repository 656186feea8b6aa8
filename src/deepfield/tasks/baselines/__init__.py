"""Classical baselines: hand-made rules and scikit-learn learners, scored like the networks.

>>> rows = run_baselines(x_train, y_train, x_test, y_test, task="classification", seed=0,
...                      learners=("svm_rbf", "random_forest"), feature_name="colours")
>>> rows += image_baselines(prepared, extractors=("hog",), learners=("svm_rbf",), seed=0)
>>> append_rows(run_dir, rows)          # then the report shows them beside the network
>>> quiescent = uvj_williams09(u_v, v_j, z)
"""
from deepfield.tasks.baselines.learners import NAMES, class_scores, make_learner
from deepfield.tasks.baselines.rules import uvj_course, uvj_course_score, uvj_williams09, williams09_intercept
from deepfield.tasks.baselines.runner import append_rows, image_baselines, run_baselines

__all__ = ["NAMES", "append_rows", "class_scores", "image_baselines", "make_learner", "run_baselines",
           "uvj_course", "uvj_course_score", "uvj_williams09", "williams09_intercept"]
