"""The rules model through the LanguageModel contract: scripted calls, misheard words."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.agents.booking import DEMO_KNOWLEDGE, Bookings, book_spec, book_tool
from voxwire.knowledge import KnowledgeBase, Passage, format_passages, search_spec, search_tool
from voxwire.services.base import (
    ChatMessage,
    LanguageModel,
    LlmEvent,
    LlmStream,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from voxwire.services.llm_rules import RulesModel, RulesStream

NOW = dt.datetime(2026, 12, 2, 10, 0)  # a Wednesday
END = ToolSpec("end_call", "Hang up after the goodbye has played.")
SYSTEM = ChatMessage("system", "You are the receptionist of Harbor Dental.")


@pytest.fixture(scope="module")
def kb() -> Iterator[KnowledgeBase]:
    with KnowledgeBase() as base:
        base.add_folder(DEMO_KNOWLEDGE)
        yield base


@pytest.fixture
def bookings() -> Iterator[Bookings]:
    with Bookings(now=lambda: NOW) as book:
        yield book


def run(
    model: LanguageModel, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
) -> list[LlmEvent]:
    async def collect() -> list[LlmEvent]:
        out: list[LlmEvent] = []
        async with model.complete(messages, tools) as stream:  # type: ignore[attr-defined]
            out.extend([event async for event in stream])
        return out

    return asyncio.run(collect())


def split(events: Sequence[LlmEvent]) -> tuple[str, list[ToolCall]]:
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = [e for e in events if isinstance(e, ToolCall)]
    return text, calls


def sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


class Call:
    """A phone call's history, built turn by turn; tools run for real."""

    def __init__(
        self,
        model: RulesModel,
        kb: KnowledgeBase,
        bookings: Bookings,
        tools: Sequence[ToolSpec] = (),
    ) -> None:
        self.model = model
        self.kb = kb
        self.bookings = bookings
        self.tools = list(tools) or [search_spec(), book_spec(), END]
        self.history: list[ChatMessage] = [SYSTEM]
        self.ended = False

    def say(self, text: str) -> str:
        """The caller says ``text``; return everything the agent says until it listens."""
        self.history.append(ChatMessage("user", text))
        spoken = []
        for _ in range(5):
            reply, calls = split(run(self.model, self.history, self.tools))
            self.history.append(ChatMessage("assistant", reply, tuple(calls)))
            spoken.append(reply)
            if not calls:
                break
            for call in calls:
                self.history.append(
                    ChatMessage("tool", self.execute(call), tool_call_id=call.id, name=call.name)
                )
            if any(c.name == "end_call" for c in calls):
                self.ended = True
                break
        return " ".join(s for s in spoken if s)

    def execute(self, call: ToolCall) -> str:
        if call.name == "search_knowledge":
            return asyncio.run(search_tool(self.kb, call.arguments["query"]))
        if call.name == "book_appointment":
            return asyncio.run(book_tool(self.bookings, **call.arguments))
        return "ok"

    def calls(self) -> list[ToolCall]:
        return [c for m in self.history for c in m.tool_calls]


# --- the contract ------------------------------------------------------------------------


def test_it_fits_the_contract_and_streams_word_by_word() -> None:
    model = RulesModel()
    assert isinstance(model, LanguageModel)
    stream = model.complete([ChatMessage("user", "hello")])
    assert isinstance(stream, LlmStream)
    events = run(model, [ChatMessage("user", "hello")])
    assert all(isinstance(e, TextDelta) for e in events)
    text, _ = split(events)
    assert text == "Hello! You've reached Harbor Dental. How can I help you today?"
    assert [e.text for e in events[:3] if isinstance(e, TextDelta)] == [
        "Hello! ",
        "You've ",
        "reached ",
    ]
    assert all(len(e.text.split()) == 1 for e in events if isinstance(e, TextDelta))
    assert run(model, [ChatMessage("user", "hello")]) == events  # deterministic


def test_aclose_stops_the_stream_and_it_runs_once() -> None:
    async def main() -> tuple[list[LlmEvent], list[LlmEvent]]:
        stream = RulesModel().complete([ChatMessage("user", "um blah")])
        got: list[LlmEvent] = []
        async for event in stream:
            got.append(event)
            if len(got) == 3:
                await stream.aclose()
        again = [e async for e in stream]
        return got, again

    got, again = asyncio.run(main())
    assert len(got) == 3
    assert again == []


def test_delays_pace_the_stream_and_a_barge_in_cuts_the_wait() -> None:
    async def main() -> tuple[list[LlmEvent], list[LlmEvent]]:
        model = RulesModel(first_token=0.001, per_token=0.001)
        paced = [e async for e in model.complete([ChatMessage("user", "hello")])]
        slow = RulesModel(first_token=30.0).complete([ChatMessage("user", "hello")])
        task = asyncio.ensure_future(_drain(slow))
        await asyncio.sleep(0.01)
        await slow.aclose()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return paced, list(slow.events)

    paced, planned = asyncio.run(main())
    assert paced == planned
    with pytest.raises(ValueError, match="must be >= 0"):
        RulesModel(per_token=-1)


async def _drain(stream: RulesStream) -> list[LlmEvent]:
    return [e async for e in stream]


# --- questions ---------------------------------------------------------------------------


def test_a_question_calls_the_search_tool_then_answers_naming_the_file(
    kb: KnowledgeBase,
) -> None:
    model = RulesModel(kb)
    tools = [search_spec(), book_spec(), END]
    history = [SYSTEM, ChatMessage("user", "what are your opening hours")]
    events = run(model, history, tools)
    assert events == [ToolCall("call_1", "search_knowledge", {"query": "opening hours open"})]
    # the tool result as a host would put it in the history
    result = asyncio.run(search_tool(kb, "opening hours open"))
    history += [
        ChatMessage("assistant", "", tuple(events)),  # type: ignore[arg-type]
        ChatMessage("tool", result, tool_call_id="call_1", name="search_knowledge"),
    ]
    text, calls = split(run(model, history, tools))
    assert calls == []
    assert text.startswith("According to hours.md, Harbor Dental is open Monday to Thursday")
    assert "8 am to 6 pm" in text
    assert 1 <= sentences(text) <= 2


@pytest.mark.parametrize(
    ("said", "source", "fact"),
    [
        ("are you open on saturday", "hours.md", "9 am to 1 pm"),
        ("what time do you close on fridays", "hours.md", "4 pm"),
        ("wot are your oppening ours", "hours.md", "8 am to 6 pm"),  # misheard
        ("where are you located", "location.md", "42 Quay Street"),
        ("is their parkin", "location.md", "Free parking"),  # "parkin": fuzzy
        ("how much dose a clening cost", "prices.md", "95 dollars"),
        ("how much is teeth wightening", "prices.md", "350 dollars"),
        ("do you take insurance", "prices.md", "insurance"),
        ("what is the cancelation policy", "policies.md", "24 hours"),
        ("i have a terrible toothache", "services.md", "emergency appointments"),
        ("which bus do i take", "location.md", "Bus lines 4 and 11"),
        ("who are the dentists", "services.md", "Dr. Maya Okafor"),
        ("how do i get there", "location.md", "42 Quay Street"),
        ("is it free for kids", "prices.md", "Children under 12"),  # kids: children
        ("what do you charge for a checkup", "prices.md", "costs 65 dollars"),
        ("i need to cancel my appointment", "policies.md", "24 hours"),  # not a booking
    ],
)
def test_questions_with_misheard_words_are_answered_from_the_right_file(
    kb: KnowledgeBase, bookings: Bookings, said: str, source: str, fact: str
) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    reply = call.say(said)
    assert reply.startswith(f"According to {source}, ")
    assert fact.lower() in reply.lower()
    assert call.calls()[0].name == "search_knowledge"


def test_a_services_question_gets_a_long_answer(kb: KnowledgeBase, bookings: Bookings) -> None:
    reply = Call(RulesModel(kb), kb, bookings).say("what services do you offer")
    assert reply.startswith("According to services.md, Harbor Dental offers general dentistry")
    assert sentences(reply) >= 3


def test_what_the_files_do_not_hold_is_said(kb: KnowledgeBase, bookings: Bookings) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    assert call.say("do you do implants").startswith("I'm sorry, I couldn't find that")
    reply = call.say("how much are implants")
    assert reply.startswith("I couldn't find anything about implants in our information, but")
    assert "prices.md" in reply


def test_without_the_tool_it_answers_from_passages_in_the_history() -> None:
    passages = format_passages(
        [
            knowledge_passage("faq.md", "Languages", "Our staff speak Welsh and Gaelic."),
            knowledge_passage("faq.md", "Pets", "Guide dogs are welcome in the clinic."),
        ]
    )
    history = [
        ChatMessage("system", f"Answer from these passages:\n\n{passages}"),
        ChatMessage("user", "can i bring my guide dog"),
    ]
    text, calls = split(run(RulesModel(), history))
    assert calls == []
    assert text == "According to faq.md, guide dogs are welcome in the clinic."


def test_without_the_tool_it_searches_its_own_knowledge(kb: KnowledgeBase) -> None:
    text, calls = split(run(RulesModel(kb), [ChatMessage("user", "is there parking")]))
    assert calls == []
    assert text.startswith("According to location.md, free parking is available")


def test_without_tool_or_knowledge_it_uses_plain_context_or_says_it_does_not_know() -> None:
    history = [
        ChatMessage("system", "The clinic has free wifi for patients. It is blue."),
        ChatMessage("user", "do you have wifi"),
    ]
    text, _ = split(run(RulesModel(), history))
    assert text == "According to our information, the clinic has free wifi for patients."
    text, _ = split(run(RulesModel(), [ChatMessage("user", "what are your opening hours")]))
    assert text.startswith("I'm sorry, I don't have that information")


def knowledge_passage(source: str, heading: str, text: str) -> Passage:
    return Passage(source, heading, 0, text)


# --- booking -----------------------------------------------------------------------------


def test_a_booking_across_turns_with_a_taken_slot(kb: KnowledgeBase, bookings: Bookings) -> None:
    assert bookings.book("Ann", "thursday", "3 pm")["ok"]
    call = Call(RulesModel(kb), kb, bookings)
    assert call.say("hi there") == (
        "Hello! You've reached Harbor Dental. How can I help you today?"
    )
    assert call.say("i wood like to make a apointment") == (
        "Sure, I can book that for you. What day would you like to come in?"
    )
    assert call.say("thurs day") == "And what time would suit you?"
    assert call.say("three") == "Can I have your name, please?"
    reply = call.say("its john smith")
    assert call.calls()[-1] == ToolCall(
        "call_1",
        "book_appointment",
        {"name": "John Smith", "day": "thursday", "time": "15:00", "service": "check-up"},
    )
    assert reply == (
        "I'm sorry, 3 pm on Thursday 3 December is already taken. I could do Thursday "
        "3 December at 2:30 pm, 3:30 pm or 2 pm. Which would you prefer?"
    )
    reply = call.say("the second one please")
    assert call.calls()[-1].arguments == {
        "name": "John Smith",
        "day": "2026-12-03",
        "time": "15:30",
        "service": "check-up",
    }
    assert reply == (
        "You're booked in for a check-up on Thursday 3 December at 3:30 pm, John. "
        "Your confirmation number is HD-0002. Is there anything else I can help with?"
    )
    assert call.say("no thanks bye") == "Thank you for calling Harbor Dental. Goodbye!"
    assert call.ended
    assert [c.id for c in call.calls()] == ["call_1", "call_2", "call_3"]
    assert call.calls()[-1] == ToolCall("call_3", "end_call", {})
    assert [b["name"] for b in bookings.list()] == ["Ann", "John Smith"]


@pytest.mark.parametrize(
    ("answer", "time"),
    [("yes please", "14:30"), ("ok the last one", "14:00"), ("yes at three thirty", "15:30")],
)
def test_an_offered_slot_is_taken_by_yes_by_its_place_or_by_its_time(
    kb: KnowledgeBase, bookings: Bookings, answer: str, time: str
) -> None:
    assert bookings.book("Ann", "friday", "3 pm")["ok"]
    call = Call(RulesModel(kb), kb, bookings)
    reply = call.say("book a check up on friday at three my name is bo")
    assert reply.endswith(
        "I could do Friday 4 December at 2:30 pm, 3:30 pm or 2 pm. Which would you prefer?"
    )
    reply = call.say(answer)
    assert call.calls()[-1].arguments["time"] == time
    assert reply.startswith("You're booked in")


def test_asking_for_a_service_is_a_booking(kb: KnowledgeBase, bookings: Bookings) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    reply = call.say("yeah hi um i was wondering if i could get my teeth cleaned")
    assert reply == "Sure, I can book that for you. What day would you like to come in?"
    assert call.say("next tuesday") == "And what time would suit you?"
    assert call.say("around eleven") == "Can I have your name, please?"
    reply = call.say("sarah o connor")
    assert call.calls()[-1].arguments == {
        "name": "Sarah O Connor",
        "day": "tuesday",
        "time": "11:00",
        "service": "cleaning",
    }
    assert reply.startswith("You're booked in for a cleaning on Tuesday 8 December at 11 am")


def test_everything_in_one_sentence_books_at_once(kb: KnowledgeBase, bookings: Bookings) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    reply = call.say("hi can i book a cleaning tomorrow at half passed two my name is maria garcia")
    (booking,) = call.calls()
    assert booking.arguments == {
        "name": "Maria Garcia",
        "day": "tomorrow",
        "time": "14:30",
        "service": "cleaning",
    }
    assert reply.startswith("You're booked in for a cleaning on Thursday 3 December at 2:30 pm")


def test_a_question_in_the_middle_of_a_booking(kb: KnowledgeBase, bookings: Bookings) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    call.say("i need an appointment for a filling on monday")
    reply = call.say("where do i park")
    assert reply.startswith("According to location.md, free parking")
    assert reply.endswith("Now, back to your booking. And what time would suit you?")
    # a question naming a day takes no slot from it
    reply = call.say("what time do you close on friday")
    assert reply.startswith("According to hours.md, ")
    assert "on Friday from 8 am to 4 pm" in reply
    assert call.say("ten in the morning") == "Can I have your name, please?"
    reply = call.say("sam lee")
    assert call.calls()[-1].arguments == {
        "name": "Sam Lee",
        "day": "monday",
        "time": "10:00",
        "service": "filling",
    }
    assert "Monday 7 December at 10 am" in reply


def test_a_closed_day_is_relayed_and_a_new_day_taken(kb: KnowledgeBase, bookings: Bookings) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    reply = call.say("book me in for sunday at ten my name is li wei")
    assert call.calls()[-1].arguments["day"] == "sunday"
    assert reply.startswith("I'm sorry, we are closed on Sundays. I could do Monday 7 December")
    reply = call.say("tuesday at eleven")
    assert call.calls()[-1].arguments["day"] == "tuesday"
    assert call.calls()[-1].arguments["time"] == "11:00"
    assert reply.startswith("You're booked in for a check-up on Tuesday 8 December at 11 am")


def test_an_answer_that_is_not_understood_is_asked_again(
    kb: KnowledgeBase, bookings: Bookings
) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    call.say("can i schedule a checkup")
    assert call.say("hmm blue") == "Sorry, I didn't get that. What day would you like to come in?"
    assert call.say("never mind") == (
        "No problem, I won't book anything. Is there anything else I can help with?"
    )
    assert call.say("yes") == "Sure, what can I help you with?"
    assert call.say("thank you") == "You're welcome! Is there anything else I can help with?"
    assert call.say("no") == "Thank you for calling Harbor Dental. Goodbye!"
    assert call.ended
    assert not any(c.name == "book_appointment" for c in call.calls())


def test_booking_needs_the_tool() -> None:
    text, calls = split(run(RulesModel(), [ChatMessage("user", "i want to book")], [END]))
    assert calls == []
    assert text.startswith("I'm sorry, I can't book appointments on this line.")


def test_tool_results_it_cannot_read_get_an_apology() -> None:
    history = [
        ChatMessage("user", "book me for monday at ten my name is ann"),
        ChatMessage("assistant", "", (ToolCall("c9", "book_appointment", {}),)),
        ChatMessage("tool", "<html>502</html>", tool_call_id="c9"),
    ]
    text, _ = split(run(RulesModel(), history, [book_spec()]))
    assert text.startswith("I'm sorry, something went wrong with the booking system.")
    history[-1] = ChatMessage("tool", json.dumps({"ok": False}), tool_call_id="c9")
    text, _ = split(run(RulesModel(), history, [book_spec()]))
    assert text.startswith("I'm sorry, that slot doesn't work.")
    other = [
        ChatMessage("user", "x"),
        ChatMessage("assistant", "", (ToolCall("c1", "weather", {}),)),
        ChatMessage("tool", "sunny", tool_call_id="c1"),
    ]
    assert (
        split(run(RulesModel(), other))[0] == "All right. Is there anything else I can help with?"
    )
    ended = [*other[:2], ChatMessage("tool", "ok", tool_call_id="c1", name="end_call")]
    ended[1] = ChatMessage("assistant", "Bye.", (ToolCall("c1", "end_call", {}),))
    assert run(RulesModel(), ended) == []


# --- goodbye -----------------------------------------------------------------------------


@pytest.mark.parametrize("said", ["bye", "good by", "ok thanks thats all", "nothing else thanks"])
def test_goodbye_then_end_call(said: str) -> None:
    events = run(RulesModel(), [ChatMessage("user", said)], [search_spec(), END])
    text, calls = split(events)
    assert text == "Thank you for calling Harbor Dental. Goodbye!"
    assert isinstance(events[-1], ToolCall)
    assert calls == [ToolCall("call_1", "end_call", {})]


def test_end_call_only_when_offered_or_no_tools_at_all() -> None:
    bye = [ChatMessage("user", "goodbye")]
    assert split(run(RulesModel(business="Acme"), bye))[1] == [ToolCall("call_1", "end_call")]
    text, calls = split(run(RulesModel(business="Acme"), bye, [search_spec()]))
    assert (text, calls) == ("Thank you for calling Acme. Goodbye!", [])


def test_tool_call_ids_count_the_history() -> None:
    earlier = tuple(ToolCall(f"x{i}", "search_knowledge", {"query": "q"}) for i in range(3))
    history = [
        ChatMessage("user", "hello"),
        ChatMessage("assistant", "", earlier),
        ChatMessage("user", "bye"),
    ]
    assert split(run(RulesModel(), history))[1] == [ToolCall("call_4", "end_call", {})]


# --- odd input ---------------------------------------------------------------------------


def test_odd_histories_get_a_reply() -> None:
    model = RulesModel()
    greeting = "Hello, thank you for calling Harbor Dental. How can I help you today?"
    assert split(run(model, []))[0] == greeting
    assert split(run(model, [SYSTEM]))[0] == greeting
    assert split(run(model, [ChatMessage("user", "")]))[0].startswith("Sorry, I didn't catch")
    assert split(run(model, [ChatMessage("user", "?!,.")]))[0].startswith("Sorry")
    assert run(model, [ChatMessage("user", "hi"), ChatMessage("assistant", "Hello!")]) == []
    late_system = [ChatMessage("user", "hi"), ChatMessage("assistant", "Hi"), SYSTEM]
    assert split(run(model, late_system))[0].startswith("Hello!")
    odd = [ChatMessage("user", None), ChatMessage("user", 42)]  # type: ignore[arg-type]
    assert split(run(model, odd))[0].startswith("Sorry")


def test_huge_input_gives_a_bounded_reply(kb: KnowledgeBase) -> None:
    model = RulesModel(kb)
    huge = "where is the parking " * 50_000  # 1 MB
    text, _ = split(run(model, [ChatMessage("user", huge)]))
    assert text.startswith("According to location.md")
    assert len(text) < 1000
    history = [ChatMessage("user", "hello")] * 5000 + [ChatMessage("user", "bye")]
    assert split(run(model, history))[1] == [ToolCall("call_1", "end_call", {})]
    flood = format_passages([knowledge_passage("a.md", "", "word " * 10_000)])
    history = [
        ChatMessage("user", "tell me about word"),
        ChatMessage("assistant", "", (ToolCall("c1", "search_knowledge", {"query": "w"}),)),
        ChatMessage("tool", flood, tool_call_id="c1"),
    ]
    text, _ = split(run(model, history, [search_spec()]))
    assert text.startswith("According to a.md, ")
    assert len(text) < 1000


_roles = st.sampled_from(["system", "user", "assistant", "tool"])
_words = st.sampled_from(
    str.split(
        "book appointment tomorrow three pm bye hours parking price my name is ann never "
        "mind yes no first monday ten what where how much 15:00 {} [1] Source: ok"
    )
)
_text = st.one_of(st.lists(_words, max_size=12).map(" ".join), st.text(max_size=60))
_names = st.sampled_from(["search_knowledge", "book_appointment", "end_call", "other", ""])


@st.composite
def _messages(draw: st.DrawFn) -> ChatMessage:
    role = draw(_roles)
    content = draw(_text)
    if role == "assistant" and draw(st.booleans()):
        call = ToolCall(draw(st.sampled_from(["c1", "c2"])), draw(_names), {"query": content})
        return ChatMessage("assistant", content, (call,))
    if role == "tool":
        payload = draw(
            st.one_of(
                _text,
                st.builds(
                    lambda ok, field, alts: json.dumps(
                        {"ok": ok, "field": field, "alternatives": alts, "when": "x at y"}
                    ),
                    st.booleans(),
                    st.sampled_from(["day", "time", "name", "nope", None]),
                    st.lists(st.dictionaries(st.sampled_from(["day", "time", "when"]), _text)),
                ),
            )
        )
        return ChatMessage(
            "tool",
            payload,
            tool_call_id=draw(st.sampled_from(["c1", "c2", ""])),
            name=draw(_names),
        )
    return ChatMessage(role, content)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(_messages(), max_size=12), st.lists(_names, max_size=3))
def test_any_history_gets_events_never_an_exception(
    history: list[ChatMessage], tool_names: list[str]
) -> None:
    tools = [ToolSpec(name) for name in tool_names]
    events = run(RulesModel(), history, tools)
    assert all(isinstance(e, TextDelta | ToolCall) for e in events)
    text, calls = split(events)
    assert len(text) < 2000
    assert all(c.name in {"search_knowledge", "book_appointment", "end_call"} for c in calls)


def test_a_name_given_as_who_the_booking_is_for(kb: KnowledgeBase, bookings: Bookings) -> None:
    call = Call(RulesModel(kb), kb, bookings)
    call.say("i would like to book a cleaning")
    assert call.say("friday at three pm") == "Can I have your name, please?"
    call.say("it is for maria")
    (booked,) = [c for c in call.calls() if c.name == "book_appointment"]
    assert booked.arguments["name"] == "Maria"
