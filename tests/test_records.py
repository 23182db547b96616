"""circus.records: what the dataclasses it replaces on circusmeta's start-up path gave."""
import pickle

import pytest

from circus.records import Factory, FrozenRecordError, Record, fields, record, replace


@record(hidden=("secret",), uncompared=("seen",))
class Spec(Record):
    name: str
    endpoint: str
    tags: tuple = ()
    seen: dict = Factory(dict)
    secret: str | None = None


@record(frozen=False)
class Tally(Record):
    name: str
    items: list = Factory(list)


def test_positional_keyword_and_defaults():
    a = Spec("a", "tcp://h:1")
    b = Spec(name="a", endpoint="tcp://h:1", tags=())
    assert (a.name, a.endpoint, a.tags, a.seen, a.secret) == ("a", "tcp://h:1", (), {}, None)
    assert a == b and vars(a) == {"name": "a", "endpoint": "tcp://h:1", "tags": (), "seen": {},
                                   "secret": None}
    assert fields(Spec) == ("name", "endpoint", "tags", "seen", "secret") == fields(a)
    with pytest.raises(TypeError):
        Spec("a")                                  # endpoint is required
    with pytest.raises(TypeError):
        Spec("a", "e", nope=1)


def test_a_factory_default_is_made_for_each_record():
    a, b = Spec("a", "e"), Spec("b", "e")
    assert a.seen == {} and a.seen is not b.seen
    given = {"x": 1}
    assert Spec("c", "e", seen=given).seen is given


def test_equality_and_hash_over_the_compared_fields_of_one_class():
    a, b = Spec("a", "e", ("t",)), Spec("a", "e", ("t",), seen={"x": 1})
    assert a == b and hash(a) == hash(b)           # seen is not compared
    assert a != Spec("a", "e", ("u",)) and a != replace(a, secret="k")
    assert {a: 1}[b] == 1
    assert a != ("a", "e", ("t",)) and Tally("a") != Spec("a", "e")


def test_frozen_records_refuse_assignment_mutable_ones_do_not_hash():
    a = Spec("a", "e")
    with pytest.raises(FrozenRecordError):
        a.name = "b"
    with pytest.raises(AttributeError):             # FrozenRecordError is an AttributeError
        del a.name
    assert a.name == "a"
    t = Tally("t")
    t.items.append(1)
    t.name = "u"
    assert (t.name, t.items) == ("u", [1]) and t == Tally("u", [1])
    with pytest.raises(TypeError):
        hash(t)


def test_replace_copies_with_changes_and_refuses_unknown_fields():
    a = Spec("a", "e", ("t",), secret="k")
    b = replace(a, endpoint="f")
    assert (b.name, b.endpoint, b.tags, b.secret) == ("a", "f", ("t",), "k") and a.endpoint == "e"
    with pytest.raises(TypeError, match="no field nope"):
        replace(a, nope=1)


def test_repr_leaves_hidden_fields_out():
    text = repr(Spec("a", "e", secret="hunter2"))
    assert text == "Spec(name='a', endpoint='e', tags=(), seen={})" and "hunter2" not in text


def test_a_record_pickles():
    a = Spec("a", "e", ("t",), secret="k")
    assert pickle.loads(pickle.dumps(a)) == a


def test_fields_may_have_any_name_init_uses_itself():
    @record
    class Section(Record):
        self: str
        values: dict = Factory(dict)
        items: tuple = ()

    s = Section("me", {"k": 1})
    assert (s.self, s.values, s.items) == ("me", {"k": 1}, ())


def test_what_a_record_cannot_be():
    with pytest.raises(TypeError, match="no default but follows"):
        @record
        class Bad(Record):
            a: int = 1
            b: int

    with pytest.raises(TypeError, match="keep for themselves"):
        @record
        class Reserved(Record):
            _default_a: int

    with pytest.raises(TypeError, match="must derive"):
        @record
        class NotARecord:
            a: int
