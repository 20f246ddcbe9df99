"""Invariant 7: after a roll-up every chats_count / messages_count equals
the true count, also with inserts running during the roll-up, and the
roll-up's work follows what changed since the last run, not table size."""

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
import unittest

from harness import StackTestCase, kcat, metric_samples, read_text, wait_until
from stack import free_port, http_get

API = "/api/v1/applications"


class TestCounts(StackTestCase):
    ROLES = ("persister",)

    def true_counts(self, token):
        chats = {int(n): int(c) for n, c in self.stack.sql(
            f"SELECT c.number, (SELECT COUNT(*) FROM messages m WHERE m.application_token = c.application_token"
            f" AND m.chat_number = c.number) FROM chats c WHERE c.application_token='{token}'")}
        return len(chats), chats

    def stored_counts(self, token):
        app = int(self.stack.sql(f"SELECT chats_count FROM applications WHERE token='{token}'")[0][0])
        chats = {int(n): int(c) for n, c in self.stack.sql(
            f"SELECT number, messages_count FROM chats WHERE application_token='{token}'")}
        return app, chats

    def rolled(self, out):
        m = re.search(r'roll-up done" chats=(\d+) applications=(\d+)', out)
        self.assertIsNotNone(m, out)
        return int(m.group(1)), int(m.group(2))

    def test_01_exact_with_inserts_running(self):
        token = self.create_app("counts")
        for _ in range(10):
            self.assertEqual(self.http("POST", f"{API}/{token}/chats").status, 201)
        stop = threading.Event()
        acked = []
        runs = []

        def load(seed):
            rnd = random.Random(seed)
            for i in range(150):
                if rnd.random() < 0.05:
                    r = self.http("POST", f"{API}/{token}/chats")
                else:
                    r = self.http("POST", f"{API}/{token}/chats/{rnd.randint(1, 10)}/messages", {"body": "x"})
                if r.status == 201:
                    acked.append(1)

        def rollups():
            while not stop.is_set():
                rc, out = self.run_counts()
                runs.append(rc)
                time.sleep(0.05)

        roller = threading.Thread(target=rollups)
        roller.start()
        ts = [threading.Thread(target=load, args=(s,)) for s in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

        def persisted():
            total = int(self.stack.sql(f"SELECT (SELECT COUNT(*) FROM messages WHERE application_token='{token}')"
                                       f" + (SELECT COUNT(*) FROM chats WHERE application_token='{token}')")[0][0])
            return total == len(acked) + 10
        wait_until("everything acknowledged persisted", persisted, 60)
        stop.set()
        roller.join()
        self.assertGreater(len(runs), 3, "roll-ups ran while inserts were running")
        self.assertEqual(set(runs), {0})
        rc, out = self.run_counts()
        self.assertEqual(rc, 0, out)
        n_chats, true_chats = self.true_counts(token)
        app, chats = self.stored_counts(token)
        self.assertEqual(app, n_chats)
        self.assertEqual(chats, true_chats)
        self.assertEqual(sum(true_chats.values()), len(acked) + 10 - n_chats)
        # Nothing pending afterwards.
        self.assertEqual(self.stack.sql("SELECT COUNT(*) FROM chat_count_deltas"), [["0"]])

    def test_02_work_follows_what_changed(self):
        token = self.create_app("incremental")
        for _ in range(20):
            self.http("POST", f"{API}/{token}/chats")
        for chat in range(1, 21):
            self.http("POST", f"{API}/{token}/chats/{chat}/messages", {"body": "x"})
        wait_until("persisted", lambda: self.stack.sql(
            f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'") == [["20"]], 30)
        rc, out = self.run_counts()
        self.assertEqual(rc, 0)
        # Nothing changed since: nothing to do.
        rc, out = self.run_counts()
        self.assertEqual(self.rolled(out), (0, 0))
        # Three chats change: three rows of work, however big the tables are.
        for chat in (3, 7, 11):
            for _ in range(4):
                self.http("POST", f"{API}/{token}/chats/{chat}/messages", {"body": "y"})
        wait_until("persisted", lambda: self.stack.sql(
            f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'") == [["32"]], 30)
        rc, out = self.run_counts()
        self.assertEqual(self.rolled(out), (3, 0))
        app, chats = self.stored_counts(token)
        self.assertEqual(app, 20)
        self.assertEqual(chats[3], 5)
        self.assertEqual(chats[4], 1)
        # Replaying what was already persisted (a worker restart) adds nothing.
        self.assertEqual(self.stack.sql("SELECT COUNT(*) FROM chat_count_deltas"), [["0"]])

    def test_04_batch_mixing_replayed_and_new_creates_counts_only_new_rows(self):
        """The persister writes a batch's creates in one statement and counts
        every row as new only when MySQL inserted all of them; a batch that
        replays a create falls back to counting per chat. Both in one batch
        here: jobs as another producer (or a replay after a crash) sends them."""
        token = self.create_app("replay")
        for _ in range(2):
            self.http("POST", f"{API}/{token}/chats")
        for _ in range(3):
            self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "first"})
        wait_until("persisted", lambda: self.stack.sql(
            f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'") == [["3"]], 30)
        self.assertEqual(self.run_counts()[0], 0)
        self.stack.stop("worker-persister")
        now = int(time.time() * 1000)

        def job(i, type_, payload):
            return json.dumps({"type": type_, "version": 1, "key": token, "request_id": f"replay-{i}",
                               "created_at": now, "payload": dict(payload, application_token=token)})
        jobs = [job(0, "chat.create", {"number": 2}),  # replay
                job(1, "chat.create", {"number": 3})]  # new
        jobs += [job(10 + n, "message.create", {"chat_number": 1, "number": n, "body": f"m{n}"})
                 for n in range(1, 7)]  # 1-3 replayed (bodies differ: the first write stays), 4-6 new
        jobs += [job(20 + n, "message.create", {"chat_number": 2, "number": n, "body": f"m{n}"})
                 for n in (1, 2)]  # new
        kcat(self.stack, "-P", "-t", "chat.commands", "-K", "\t",
             data="".join(f"{token}\t{j}\n" for j in jobs).encode())
        log = self.stack.log("worker-persister")
        replays_before = read_text(log).count("batch replays creates")
        self.stack.start_worker("persister")
        wait_until("persisted", lambda: self.stack.sql(
            f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'") == [["8"]], 30)
        wait_until("chat 3 persisted", lambda: self.stack.sql(
            f"SELECT COUNT(*) FROM chats WHERE application_token='{token}'") == [["3"]], 30)
        self.assertEqual(self.stack.sql(f"SELECT body FROM messages WHERE application_token='{token}'"
                                        f" AND chat_number=1 AND number=1"), [["first"]])
        self.assertGreater(read_text(log).count("batch replays creates"), replays_before)
        rc, out = self.run_counts()
        self.assertEqual(rc, 0, out)
        app, chats = self.stored_counts(token)
        self.assertEqual((app, chats), (3, {1: 6, 2: 2, 3: 0}))
        self.assertEqual(self.true_counts(token), (3, chats))

    def test_03_every_mode_progress_and_failures(self):
        token = self.create_app("every")
        self.http("POST", f"{API}/{token}/chats")
        status = f"http://127.0.0.1:{free_port()}"
        proc = subprocess.Popen([self.stack.binary("switchboard-counts"), "--every", "1",
                                 "--status-listen", status[len("http://"):]],
                                env=self.stack.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for _ in range(3):
                self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "x"})
            wait_until("counted by the periodic run", lambda: self.stored_counts(token) == (1, {1: 3}), 30, 0.2)
            # A later pass, not the first one, counts what comes after it.
            for _ in range(2):
                self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "y"})
            wait_until("counted by a later pass", lambda: self.stored_counts(token) == (1, {1: 5}), 30, 0.2)
            # The daemon's status port: alive, when it last committed, how many runs.
            code, body = http_get(status + "/healthz")
            self.assertEqual(code, 200)
            health = json.loads(body)
            self.assertEqual(health["status"], "ok")
            self.assertLess(health["seconds_since_success"], 10)
            code, text = http_get(status + "/metrics")
            self.assertEqual(code, 200)
            text = text.decode()
            runs = metric_samples(text, "switchboard_counts_runs_total")
            self.assertGreaterEqual(runs['{outcome="ok"}'], 2)
            self.assertEqual(runs['{outcome="failed"}'], 0)
            last = metric_samples(text, "switchboard_counts_last_success_timestamp_seconds")[""]
            self.assertLess(abs(time.time() - last), 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=20)[0].decode()
        self.assertEqual(proc.returncode, 0, out)
        self.assertGreaterEqual(out.count("roll-up done"), 2)
        # On a terminal it shows progress.
        self.http("POST", f"{API}/{token}/chats/1/messages", {"body": "x"})
        wait_until("persisted", lambda: self.stack.sql(
            f"SELECT COUNT(*) FROM messages WHERE application_token='{token}'") == [["6"]], 30)
        cmd = f"{self.stack.binary('switchboard-counts')}"
        r = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=self.stack.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 0)
        self.assertIn("rolling up: 1 chats", r.stdout.decode())
        # Database unreachable: a non-zero exit, for cron to report.
        env = dict(self.stack.env(), MYSQL_URL="mysql://u:p@127.0.0.1:1/x")
        r = subprocess.run([self.stack.binary("switchboard-counts")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("roll-up failed", r.stdout.decode())


if __name__ == "__main__":
    unittest.main()
