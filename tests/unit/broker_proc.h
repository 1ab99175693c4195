/*
 * broker_proc.h — runs the broker from the same build (build/<BUILD>/ailurus next to the test
 * programs' directory, or $AILURUS_BIN) as a subprocess on 127.0.0.1 with a free port, a data
 * directory under test_tmpdir() and its log in test_tmpdir()/broker.log.
 */
#ifndef AL_TEST_BROKER_PROC_H
#define AL_TEST_BROKER_PROC_H

/* "127.0.0.1:PORT" of the running broker, set by test_broker_start. */
extern char test_broker_addr[64];

/* Starts the broker with smp shards (once per process; later calls return 0 at once) and waits
 * up to 20 s for its ready line. Returns 0 or -1 (the log says why). Stopped at exit. */
int test_broker_start(int smp);

/* SIGTERM, then SIGKILL after 5 s; waits for the process. */
void test_broker_stop(void);

#endif
