"""iopkt.handoff: the bounded queue between a legacy driver's receive
thread (the producer) and the stack thread (the consumer).

The queue owns what it holds; put() says whether it took the item, kick()
wakes the stack at most once until the stack starts draining, take()
hands items back oldest first. Its counters are what nicinfo shows under
`handoff_queue`, so each is pinned down to the exact value."""

from iopkt.kern.handoff import HandoffQueue


class Waker:
    """The stack's wake-up: counts how often the producer called it."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def stats(q, **changed):
    """The stats of an untouched queue of maxlen 4, with `changed` applied."""
    want = {"len": 0, "maxlen": 4, "enqueued": 0, "dequeued": 0, "drops": 0,
            "hiwat": 0, "wakeups": 0}
    want.update(changed)
    return want


# -- a new queue: empty, nothing counted, nobody woken ------------------------

def test_a_new_queue_is_empty_with_every_counter_at_zero():
    w = Waker()
    q = HandoffQueue(4, w)
    assert len(q) == 0 and q.maxlen == 4
    assert q.stats() == stats(q)
    assert q.take(10) == []
    assert q.stats() == stats(q)
    assert w.calls == 0


# -- put: append while there is room, refuse (and count a drop) when full -----

def test_put_appends_and_counts_each_item_once():
    q = HandoffQueue(4, Waker())
    assert q.put("a") is True
    assert len(q) == 1 and q.stats() == stats(q, len=1, enqueued=1, hiwat=1)
    assert q.put("b") is True
    assert q.stats() == stats(q, len=2, enqueued=2, hiwat=2)


def test_put_on_a_full_queue_refuses_and_keeps_what_it_has():
    q = HandoffQueue(2, Waker())
    assert q.put("a") is True and q.put("b") is True
    assert q.put("c") is False                      # the caller still owns "c"
    assert q.stats() == {"len": 2, "maxlen": 2, "enqueued": 2, "dequeued": 0,
                         "drops": 1, "hiwat": 2, "wakeups": 0}
    assert q.put("d") is False
    assert q.drops == 2 and q.enqueued == 2
    assert q.take(5) == ["a", "b"]                  # the refused ones never got in


def test_a_queue_of_one_takes_exactly_one():
    q = HandoffQueue(1, Waker())
    assert q.put("only") is True
    assert q.put("more") is False
    assert len(q) == 1 and q.drops == 1 and q.hiwat == 1


def test_put_never_wakes_the_stack_by_itself():
    w = Waker()
    q = HandoffQueue(4, w)
    q.put("a")
    q.put("b")
    assert w.calls == 0 and q.wakeups == 0


# -- hiwat: the most items the queue ever held at once ------------------------

def test_hiwat_is_the_highest_length_ever_reached():
    q = HandoffQueue(8, Waker())
    for x in "abc":
        q.put(x)
    assert q.hiwat == 3
    assert q.take(2) == ["a", "b"]
    q.put("d")                                      # length back to 2: no new high
    assert q.hiwat == 3
    q.put("e")
    q.put("f")                                      # length 4: a new high
    assert q.hiwat == 4 and len(q) == 4


def test_hiwat_is_not_raised_by_a_refused_put():
    q = HandoffQueue(2, Waker())
    q.put("a")
    q.put("b")
    q.put("c")
    assert q.hiwat == 2


# -- kick: one wake-up per drain, however many bursts came before -------------

def test_kick_wakes_the_stack_once_until_it_drains():
    w = Waker()
    q = HandoffQueue(4, w)
    q.put("a")
    q.kick()
    assert w.calls == 1 and q.wakeups == 1 and q.pending
    q.put("b")
    q.kick()                                        # the stack is due anyway
    q.kick()
    assert w.calls == 1 and q.wakeups == 1
    q.begin_drain()
    assert not q.pending
    q.kick()                                        # a put after the drain began
    assert w.calls == 2 and q.wakeups == 2
    assert q.stats()["wakeups"] == 2


def test_each_drain_lets_exactly_one_more_wake_up_through():
    w = Waker()
    q = HandoffQueue(4, w)
    for _ in range(3):
        q.kick()
        q.kick()
        q.begin_drain()
    assert w.calls == 3 and q.wakeups == 3


def test_begin_drain_alone_wakes_nobody():
    w = Waker()
    q = HandoffQueue(4, w)
    q.begin_drain()
    q.begin_drain()
    assert w.calls == 0 and q.wakeups == 0 and not q.pending


# -- take: up to `burst` items, oldest first, counted as dequeued -------------

def test_take_returns_at_most_a_burst_oldest_first():
    q = HandoffQueue(8, Waker())
    for x in "abcde":
        q.put(x)
    assert q.take(2) == ["a", "b"]
    assert len(q) == 3 and q.dequeued == 2
    assert q.take(2) == ["c", "d"]
    assert q.dequeued == 4
    assert q.take(2) == ["e"]                       # fewer than a burst left
    assert q.take(2) == []
    assert q.stats() == {"len": 0, "maxlen": 8, "enqueued": 5, "dequeued": 5,
                         "drops": 0, "hiwat": 5, "wakeups": 0}


def test_take_hands_back_the_very_objects_put_in():
    q = HandoffQueue(4, Waker())
    items = [object(), object()]
    for x in items:
        q.put(x)
    out = q.take(4)
    assert len(out) == 2 and out[0] is items[0] and out[1] is items[1]


def test_take_of_zero_takes_nothing():
    q = HandoffQueue(4, Waker())
    q.put("a")
    assert q.take(0) == [] and len(q) == 1 and q.dequeued == 0


def test_a_drained_queue_takes_items_again():
    q = HandoffQueue(2, Waker())
    q.put("a")
    q.put("b")
    assert q.put("c") is False
    assert q.take(5) == ["a", "b"]
    assert q.put("e") is True
    assert q.take(5) == ["e"]
    assert q.stats() == {"len": 0, "maxlen": 2, "enqueued": 3, "dequeued": 3,
                         "drops": 1, "hiwat": 2, "wakeups": 0}


# -- the producer/consumer protocol, one step at a time -----------------------

def test_a_put_after_the_consumer_saw_the_queue_empty_wakes_it_again():
    """The consumer clears `pending` before it drains; a producer that
    appends after the drain found the queue empty must send a wake-up, or
    its packet waits for the next burst."""
    w = Waker()
    q = HandoffQueue(4, w)
    q.put("a")
    q.kick()                                        # wake-up 1
    q.begin_drain()                                 # the stack runs...
    assert q.take(64) == ["a"]                      # ...and finds "a"
    q.put("b")                                      # the producer, meanwhile
    q.kick()                                        # wake-up 2: not lost
    assert w.calls == 2
    q.begin_drain()
    assert q.take(64) == ["b"]
    assert q.stats() == {"len": 0, "maxlen": 4, "enqueued": 2, "dequeued": 2,
                         "drops": 0, "hiwat": 1, "wakeups": 2}
