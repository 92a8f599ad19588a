"""The exercises at the end of each notebook, and their checkers.

- :mod:`.questions`: the value questions (``check("name", answer)``: right or wrong, with a hint);
- :mod:`.code_exercises`: the "your turn" cells, where the learner writes one step as a function
  (``check("name", my_function)`` runs it on the cases);
- :mod:`.learner_call`: one call of the learner's function, within a time limit, without autograd where the
  exercise says "by hand", its inputs checked for changes; :mod:`.results`: reading and comparing its result;
- :mod:`.cases`, :mod:`.box_cases`, :mod:`.loss_cases`: those exercises' cases and the slips they catch;
- :mod:`.solutions`: the starting stubs and the solutions of the code exercises.

The notebooks import ``check`` from here: ``from ssd_lesson.course.exercises import check``.
"""
from .code_exercises import CODE_EXERCISES, check_code, run_cases
from .questions import EXERCISES, Exercise, check, solve
from .solutions import FUNCTION_NAMES, SOLUTIONS, STUBS, cell_source, fill_solutions

__all__ = ["check", "solve", "EXERCISES", "Exercise", "CODE_EXERCISES", "check_code", "run_cases",
           "STUBS", "SOLUTIONS", "FUNCTION_NAMES", "cell_source", "fill_solutions"]
