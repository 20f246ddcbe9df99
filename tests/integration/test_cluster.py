"""A Kafka cluster that loses a node under load: three brokers on loopback
(KRaft, each broker and controller), topics with three replicas and
min.insync.replicas=2, the producers with acks=all and idempotence. Message
creates run steadily; the leader of the partition they go to is killed -9,
then started again. Every create answered 201 is persisted once, with its
own body; while the partition has no leader, creates answer 201 or 503 and
nothing else; the persister goes on through it."""

import json
import subprocess
import threading
import time
import unittest

from harness import StackTestCase, kcat, wait_until


class Load:
    """Creates messages in one chat from a few threads until stopped;
    remembers (number, body) of each 201 and the time and status of every
    other answer."""

    def __init__(self, test, token, threads=4):
        self.test, self.token = test, token
        self.acked, self.others, self.lock = [], [], threading.Lock()
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, k):
        i = 0
        while not self.stop.is_set() and i < 20000:  # bounded in count as well as in time
            body = f"t{k}-{i}"
            i += 1
            try:
                r = self.test.http("POST", f"/api/v1/applications/{self.token}/chats/1/messages",
                                   {"body": body}, timeout=30)
                status = r.status
            except OSError as e:
                status = repr(e)
            with self.lock:
                self.sent += 1
                if status == 201:
                    self.acked.append((r.json()["number"], body, time.monotonic()))
                else:
                    self.others.append((status, time.monotonic()))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


class TestCluster(StackTestCase):
    ROLES = ("persister",)
    PARTITIONS = 4
    KAFKA_NODES = 3

    @classmethod
    def configure(cls, st):
        for name in st.kafka_names():
            # A killed broker is fenced after 3 s without a heartbeat (9 s
            # by default), and its partitions get new leaders then.
            st.kafka_node(name).extra.update({"broker.session.timeout.ms": "3000",
                                              "broker.heartbeat.interval.ms": "500"})

    def metadata(self):
        return json.loads(kcat(self.stack, "-L", "-t", "chat.commands", "-J"))

    def test_01_topics_are_replicated_three_times(self):
        md = self.metadata()
        self.assertEqual(len(md["brokers"]), 3)
        parts = md["topics"][0]["partitions"]
        self.assertEqual(len(parts), self.PARTITIONS)
        for p in parts:
            self.assertEqual(len(p["replicas"]), 3, p)
            self.assertEqual(len(p["isrs"]), 3, p)
        # min.insync.replicas=2: made so by switchboard-migrate topics.
        self.assertIn("min.insync.replicas=2", self.admin("describe").splitlines())

    def test_02_the_busiest_partitions_leader_killed_under_load(self):
        st = self.stack
        token = self.create_app("cluster")
        self.assertEqual(self.http("POST", f"/api/v1/applications/{token}/chats").status, 201)
        load = Load(self, token)
        try:
            wait_until("creates flowing", lambda: len(load.acked) >= 200, 30)
            # All of this application's jobs go to one partition (key =
            # token): the busiest. Its leader is killed.
            part = max(self.high_watermarks().items(), key=lambda kv: kv[1])[0]
            leader = next(p["leader"] for p in self.metadata()["topics"][0]["partitions"]
                          if p["partition"] == part)
            victim = f"kafka-{leader}"
            before = len(load.acked)
            t_kill = time.monotonic()
            st.kafka_crash(victim)
            # A new leader is elected among the two in-sync replicas left,
            # and creates are acknowledged again.
            wait_until("creates acknowledged after the kill",
                       lambda: any(t > t_kill + 0.5 for _, _, t in load.acked[before:]), 40, 0.2)
            new_leader = next(p["leader"] for p in self.metadata()["topics"][0]["partitions"]
                              if p["partition"] == part)
            self.assertNotEqual(new_leader, leader)
            st.start_kafka_node(victim)  # back, with its log on disk; it catches up
            t_back = time.monotonic()
            wait_until("creates after the restart",
                       lambda: sum(1 for _, _, t in load.acked if t > t_back) >= 200, 40, 0.2)
        finally:
            load.finish()
        # Nothing but 201 and 503 (the election), and 503 only near it.
        self.assertTrue(all(s == 503 for s, _ in load.others), load.others[:10])
        times = sorted(t for _, _, t in load.acked)
        pause = max(b - a for a, b in zip(times, times[1:]))
        print(f"\ncluster: {load.sent} creates, {len(load.acked)} answered 201, {len(load.others)} 503 "
              f"(leader of chat.commands[{part}] killed, broker {leader} -> {new_leader}; the longest "
              f"time without a 201: {pause:.2f} s)")
        # Every 201 persisted exactly once, with its own body.
        acked = {n: b for n, b, _ in load.acked}
        self.assertEqual(len(acked), len(load.acked), "a number answered 201 twice")

        def persisted():
            rows = st.sql(f"SELECT number, body FROM messages WHERE application_token='{token}' AND chat_number=1")
            return {int(n): b for n, b in rows}
        rows = wait_until("every 201 persisted", lambda: (lambda r: r if all(n in r for n in acked) else None)(
            persisted()), 90, 0.5)
        wrong = {n: (b, rows[n]) for n, b in acked.items() if rows[n] != b}
        self.assertEqual(wrong, {})
        # The cluster is whole again: three in-sync replicas.
        wait_until("ISR of 3 again", lambda: all(len(p["isrs"]) == 3 for p in
                                                 self.metadata()["topics"][0]["partitions"]), 60, 0.5)

    def high_watermarks(self):
        return {int(p): int(hi) for p, _, hi in (line.split() for line in self.admin("offsets").splitlines())}

    def admin(self, what, topic="chat.commands"):
        """The test tool's Admin API answers (kcat's metadata has no topic
        settings, and its consumer no watermarks)."""
        r = subprocess.run([self.stack.binary("kafka_admin"), what, self.stack.kafka_brokers, topic],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode()


if __name__ == "__main__":
    unittest.main()
