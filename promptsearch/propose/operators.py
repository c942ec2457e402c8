"""The four operators, each a DSPy module around one signature; all of them write an *instruction*.

The template is then assembled by `templates.compose`: the instruction, the parent's "output only" rule
(or one naming the generated format) and the document slot. A 135M model cannot be trusted to place a
`{document}` slot or keep the rule, but it can write a usable instruction; validation judges what it wrote.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError


class GenerateInstruction(dspy.Signature):
    """Write an instruction that asks an assistant to rewrite the document below as the given format.
    Write two or three plain sentences. Do not include the document."""

    format_idea: str = dspy.InputField(desc="the format to produce")
    instruction: str = dspy.OutputField()


class MutateInstruction(dspy.Signature):
    """Improve an instruction that asks an assistant to rewrite the document below. The feedback says how
    its outputs scored and what went wrong. Write the improved instruction in two or three plain sentences."""

    instruction: str = dspy.InputField()
    feedback: str = dspy.InputField()
    improved_instruction: str = dspy.OutputField()


class CrossoverInstruction(dspy.Signature):
    """Combine two instructions for rewriting the document below into one instruction that keeps the
    strengths of both. Write it in two or three plain sentences."""

    first_instruction: str = dspy.InputField()
    second_instruction: str = dspy.InputField()
    combined_instruction: str = dspy.OutputField()


class DiversifyInstruction(dspy.Signature):
    """The outputs of this instruction all start the same way. Rewrite the instruction so that each output
    opens differently, with a detail taken from its own document. Write two or three plain sentences."""

    instruction: str = dspy.InputField()
    repeated_opening: str = dspy.InputField(desc="how most outputs begin")
    rewritten_instruction: str = dspy.OutputField()


class Operator(dspy.Module):
    """Predict the signature's one output field from keyword inputs; returns the raw text."""

    signature: type[dspy.Signature]

    def __init__(self) -> None:
        super().__init__()
        self.predict = dspy.Predict(self.signature)

    def forward(self, **inputs: str) -> str:
        prediction = self.predict(**inputs)
        return str(getattr(prediction, next(iter(self.signature.output_fields))))


class Generate(Operator):
    signature = GenerateInstruction


class Mutate(Operator):
    signature = MutateInstruction


class Crossover(Operator):
    signature = CrossoverInstruction


class Diversify(Operator):
    signature = DiversifyInstruction


OPERATOR_MODULES: dict[str, type[Operator]] = {
    "generate": Generate,
    "mutate": Mutate,
    "crossover": Crossover,
    "diversify": Diversify,
}


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


class PlainTextAdapter(dspy.Adapter):
    """One user message a 135M model can follow: the task, each input under its title, the output's title.

    DSPy's ChatAdapter asks for `[[ ## field ## ]]` markers, which SmolLM2-135M never reproduces; here the whole
    completion is the (single) output field, less a repeated title.
    """

    def format(self, signature: type[dspy.Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list:
        parts = [signature.instructions.strip()]
        parts += [f"{_title(name)}:\n{inputs[name]}" for name in signature.input_fields if name in inputs]
        parts.append(f"{_title(next(iter(signature.output_fields)))}:")
        return [{"role": "user", "content": "\n\n".join(parts)}]

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        name = next(iter(signature.output_fields))
        text = completion.strip()
        title = f"{_title(name)}:"
        if text.lower().startswith(title.lower()):
            text = text[len(title) :].strip()
        if not text:
            raise AdapterParseError(adapter_name="PlainTextAdapter", signature=signature, lm_response=completion)
        return {name: text}

    def format_field_with_value(self, fields_with_values: dict[Any, Any], role: str = "user") -> str:
        """What DummyLM answers with: the values alone, as a model following this adapter would."""
        return "\n\n".join(str(v) for v in fields_with_values.values())


def adapter_for(kind: str) -> dspy.Adapter:
    return PlainTextAdapter() if kind == "plain" else dspy.ChatAdapter(use_json_adapter_fallback=False)
