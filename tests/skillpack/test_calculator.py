from __future__ import annotations

import pytest

from contracts.errors import BadRequest
from skillpack import calculator
from skillpack.errors import CalculationError, NoExpressionFound, UnsafeExpression


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("what is 15% of 240", 36),
        ("240的15%", 36),
        ("300的百分之二十", 60),
        ("百分之二十的三百", 60),
        ("average of 3, 5 and 10", 6),
        ("3、5和10的平均值", 6),
        ("sum of 1, 2, 3 and 4", 10),
        ("三加五乘二", 13),
        ("计算一下三加五", 8),
        ("二十五乘以四等于多少", 100),
        ("一百除以八", 12.5),
        ("what is 2 to the power of 10", 1024),
        ("2的10次方", 1024),
        ("5 squared", 25),
        ("square root of 144", 12),
        ("16的平方根", 4),
        ("12 plus 7", 19),
        ("100 minus 37", 63),
        ("twelve times eleven", 132),
        ("84 divided by 4", 21),
        ("what's 3 x 4?", 12),
        ("(3+4)*2", 14),
        ("1,000 * 3", 3000),
        ("what is 7 percent of 1,250?", 87.5),
        ("the difference between 100 and 58", 42),
        ("How much is 1/3 of 90?", 30),
        ("１２＋３", 15),
        ("Calculate 45 + 55 for me", 100),
    ],
)
def test_solve_extracts_from_free_text(text: str, value: float) -> None:
    result = calculator.solve(text)
    assert result.value == pytest.approx(value)
    assert "=" in result.text


def test_operator_precedence_and_associativity() -> None:
    assert calculator.evaluate("2 + 3 * 4").value == 14
    assert calculator.evaluate("2 ^ 3 ^ 2").value == 512  # right associative
    assert calculator.evaluate("-3 ^ 2").value == -9
    assert calculator.evaluate("100 - 10 - 5").value == 85  # left associative
    assert calculator.evaluate("sqrt(16) + 15% * 240").value == 40


@pytest.mark.parametrize(
    "code",
    ["__import__('os')", "__import__('os').system('id')", "a + 1", "1; 2", "open('x')", "[1,2]", "2 .real"],
)
def test_evaluate_never_runs_code(code: str) -> None:
    with pytest.raises(UnsafeExpression):
        calculator.evaluate(code)


@pytest.mark.parametrize(
    "code", ["2 + __import__('os')", "__import__('os').system('rm -rf /')", "exec(1)", "lambda: 1"]
)
def test_solve_rejects_code(code: str) -> None:
    with pytest.raises(BadRequest):
        calculator.solve(code)


def test_errors_are_bad_requests_with_messages() -> None:
    with pytest.raises(CalculationError, match="division by zero"):
        calculator.solve("1/0")
    with pytest.raises(CalculationError, match="too large"):
        calculator.solve("9^9^9")
    with pytest.raises(NoExpressionFound):
        calculator.solve("hello there, how are you")
    with pytest.raises(NoExpressionFound):
        calculator.solve("")
    with pytest.raises(UnsafeExpression):
        calculator.evaluate("(" * 100 + "1" + ")" * 100)
    with pytest.raises(BadRequest) as info:
        calculator.solve("1/0")
    assert info.value.status == 400 and info.value.to_dict()["error"]
