"""Request data reaches SQL only through db_sqlf / db_quote (the one
escaping helper) or constants: no SQL text in the C sources pastes a
string into quotes with printf ('%s'), where a value that validation let
through by mistake would become SQL. A static check over the sources."""

import os
import re
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIRS = ("lib", "clients", "jobs", "store", "dispatcher", "workers", "counts", "migrate")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|REPLACE|WHERE|VALUES|SET)\b")
PASTED = re.compile(r"'%[-.0-9*]*l*[sd]'|'%[-.0-9*]*s")
STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def statements(text):
    """C statements, roughly: the text between semicolons outside strings."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    out, cur, pos = [], [], 0
    for m in STRING.finditer(text):
        cur.append(text[pos:m.start()])
        cur.append(m.group(0))
        pos = m.end()
    cur.append(text[pos:])
    joined = "".join(cur)
    buf, in_str, esc = [], False, False
    for ch in joined:
        buf.append(ch)
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == ";":
            out.append("".join(buf))
            buf = []
    out.append("".join(buf))
    return out


def offenders():
    found = []
    for d in DIRS:
        for dirpath, _, files in os.walk(os.path.join(ROOT, d)):
            for f in files:
                if not f.endswith(".c"):
                    continue
                path = os.path.join(dirpath, f)
                for st in statements(open(path, encoding="utf-8").read()):
                    literals = "".join(m.group(0) for m in STRING.finditer(st))
                    if SQL.search(literals) and PASTED.search(literals):
                        found.append((os.path.relpath(path, ROOT), " ".join(st.split())[:160]))
    return found


class TestSqlText(unittest.TestCase):
    def test_no_value_pasted_into_sql_quotes(self):
        self.assertEqual(offenders(), [])

    def test_the_check_finds_a_pasted_value(self):
        sample = 'snprintf(sql, sizeof sql, "SELECT 1 FROM users WHERE phone_number = \'%s\'", p);'
        self.assertTrue(any(SQL.search(s) and PASTED.search(s) for s in statements(sample)))


if __name__ == "__main__":
    unittest.main()
