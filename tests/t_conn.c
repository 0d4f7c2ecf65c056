/* t_conn: the connection state machine (conn.c) and the deadline heap
 * (net.c) without sockets: (1) every (from, to) pair of states against the
 * table written here from conn.h's comment; (2) each state's clock; (3) the
 * eviction order; (4) the timer heap against a brute-force reference over
 * random arms, re-arms, disarms and pops. */
#define NDEBUG /* NEVER() refuses an illegal transition instead of asserting */
#include "../src/conn.c"
#include "../src/net.c"
#include "t.h"

static void test_successors(void)
{
	/* from conn.h: FREE -> HANDSHAKE -> HELLO -> OPEN -> CLOSING -> DEAD ->
	 * FREE, with HELLO -> CLOSING (a bad HELLO), OPEN -> DEAD (the peer is
	 * gone), and HANDSHAKE, HELLO -> FREE (nothing in the engine yet) */
	static const char *legal[] = {"FREE>HANDSHAKE", "HANDSHAKE>HELLO", "HANDSHAKE>FREE", "HELLO>OPEN",
				      "HELLO>CLOSING",  "HELLO>FREE",      "OPEN>CLOSING",   "OPEN>DEAD",
				      "CLOSING>DEAD",   "DEAD>FREE"};
	int n_ok = 0;
	for (int a = 0; a < CONN_STATE_N; a++)
		for (int b = 0; b < CONN_STATE_N; b++) {
			char k[64];
			snprintf(k, sizeof(k), "%s>%s", conn_state_name(a), conn_state_name(b));
			int want = 0;
			for (size_t i = 0; i < TS_ARRAY_LEN(legal); i++)
				want |= !strcmp(k, legal[i]);
			struct conn c = {.st = (enum conn_state)a};
			log_set_level(LOG_OFF);
			int rc = conn_set_state(&c, (enum conn_state)b, 5.0);
			T_CHECK(want ? rc == 0 && c.st == (enum conn_state)b && c.t_state == 5.0
				     : rc == -E_INTERNAL && c.st == (enum conn_state)a,
				"%s: %s (rc %d)", k, want ? "legal" : "illegal", rc);
			n_ok += want;
		}
	T_CHECK(n_ok == (int)TS_ARRAY_LEN(legal), "every legal transition named exists (%d)", n_ok);
}

static void test_clocks(void)
{
	struct conn_limits l = {.handshake_s = 1, .hello_s = 2, .ping_s = 3, .idle_s = 10};
	struct conn c = {.st = CONN_FREE};
	double next;
	T_CHECK(conn_timer(&c, &l, 100, &next) == CONN_DUE_NONE && next == 0, "FREE: no clock");
	conn_set_state(&c, CONN_HANDSHAKE, 100);
	T_CHECK(conn_timer(&c, &l, 100.5, &next) == CONN_DUE_NONE && next == 101, "HANDSHAKE: due at +1 (%g)", next);
	T_CHECK(conn_timer(&c, &l, 101, &next) == CONN_DUE_EXPIRED, "HANDSHAKE: expired at +1");
	conn_set_state(&c, CONN_HELLO, 101);
	T_CHECK(conn_timer(&c, &l, 102, &next) == CONN_DUE_NONE && next == 103, "HELLO: due at +2 (%g)", next);
	T_CHECK(conn_timer(&c, &l, 103.5, &next) == CONN_DUE_EXPIRED, "HELLO: expired");
	conn_set_state(&c, CONN_OPEN, 103);
	T_CHECK(c.t_rx == 103 && c.t_ping == 0, "OPEN starts the idle clock");
	T_CHECK(conn_timer(&c, &l, 104, &next) == CONN_DUE_NONE && next == 106, "OPEN: first PING at +3 (%g)", next);
	T_CHECK(conn_timer(&c, &l, 106, &next) == CONN_DUE_PING, "PING due");
	c.t_ping = 106;
	T_CHECK(conn_timer(&c, &l, 106, &next) == CONN_DUE_NONE && next == 109, "next PING at +3 (%g)", next);
	c.t_ping = 112;
	T_CHECK(conn_timer(&c, &l, 112, &next) == CONN_DUE_NONE && next == 113, "the close at t_rx + 10 (%g)", next);
	T_CHECK(conn_timer(&c, &l, 113, &next) == CONN_DUE_IDLE, "idle: close");
	c.t_rx = 112.5; /* a frame came */
	T_CHECK(conn_timer(&c, &l, 113, &next) == CONN_DUE_NONE && next == 115.5, "a frame restarts it (%g)", next);
	conn_set_state(&c, CONN_CLOSING, 120);
	T_CHECK(conn_timer(&c, &l, 121, &next) == CONN_DUE_NONE && next == 120 + CONN_LINGER_S, "CLOSING: linger");
	T_CHECK(conn_timer(&c, &l, 120 + CONN_LINGER_S, &next) == CONN_DUE_LINGER, "linger over");
	conn_set_state(&c, CONN_DEAD, 123);
	T_CHECK(conn_timer(&c, &l, 1e9, &next) == CONN_DUE_NONE && next == 0, "DEAD: no clock");
}

static void test_evict(void)
{
	struct conn hs_old = {.st = CONN_HANDSHAKE, .seq = 5}, hs_new = {.st = CONN_HANDSHAKE, .seq = 9};
	struct conn he_old = {.st = CONN_HELLO, .seq = 1}, open = {.st = CONN_OPEN, .seq = 0};
	T_CHECK(conn_evictable(&hs_old) && conn_evictable(&he_old) && !conn_evictable(&open), "evictable states");
	T_CHECK(conn_evict_before(&hs_new, &he_old) && !conn_evict_before(&he_old, &hs_new),
		"in its handshake before waiting for HELLO, whatever the age");
	T_CHECK(conn_evict_before(&hs_old, &hs_new) && !conn_evict_before(&hs_new, &hs_old), "then the older");
}

static void test_heap(void)
{
	enum { N = 97 };
	struct net_timers t;
	struct ts_err e = {0};
	static double ref[N]; /* 0: disarmed */
	T_CHECK(net_timers_init(&t, N, &e) == 0, "init: %s", e.msg);
	uint64_t r = 12345;
	int bad = 0, pops = 0;
	for (int step = 0; step < 20000; step++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		int id = (int)((r >> 33) % N), op = (int)((r >> 20) % 8);
		double due = 1 + (double)((r >> 40) % 1000);
		if (op < 5) {
			net_timer_set(&t, id, due), ref[id] = due;
		} else if (op == 5) {
			net_timer_set(&t, id, 0), ref[id] = 0;
		} else { /* pop everything due by `due` in order */
			double last = 0;
			int got;
			while ((got = net_timer_pop(&t, due)) >= 0) {
				bad += ref[got] == 0 || ref[got] > due || ref[got] < last;
				last = ref[got], ref[got] = 0, pops++;
			}
			for (int i = 0; i < N; i++)
				bad += ref[i] != 0 && ref[i] <= due; /* left one that was due */
		}
		int armed = 0;
		for (int i = 0; i < N; i++)
			armed += ref[i] != 0;
		bad += armed != t.n;
	}
	T_CHECK(bad == 0 && pops > 1000, "heap equals the reference over 20000 operations (%d pops, %d bad)", pops,
		bad);
	net_timers_free(&t);
}

int main(void)
{
	test_successors();
	test_clocks();
	test_evict();
	test_heap();
	return T_DONE();
}
