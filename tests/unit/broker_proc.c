/*
 * broker_proc.c — a real `ailurus start` as a subprocess for unit tests that talk to a broker
 * (see broker_proc.h). Linked into every unit-test program.
 */
#include "broker_proc.h"

#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t broker_pid;
char test_broker_addr[64];

void test_broker_stop(void)
{
    if (broker_pid > 0) {
        kill(broker_pid, SIGTERM);
        int st;
        for (int i = 0; i < 100 && waitpid(broker_pid, &st, WNOHANG) == 0; i++) usleep(50000);
        kill(broker_pid, SIGKILL);
        waitpid(broker_pid, &st, 0);
        broker_pid = 0;
    }
}

int test_broker_start(int smp)
{
    if (broker_pid > 0) return 0;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 64);
    if (n <= 0) return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    strcpy(slash, "/../ailurus");
    const char *env = getenv("AILURUS_BIN"); /* override: a broker binary built elsewhere */
    if (env && *env) snprintf(exe, sizeof(exe), "%s", env);
    char dir[4200], logp[4300];
    snprintf(dir, sizeof(dir), "%s/broker", test_tmpdir());
    snprintf(logp, sizeof(logp), "%s/broker.log", test_tmpdir());
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        char smps[16];
        snprintf(smps, sizeof(smps), "%d", smp);
        execl(exe, exe, "start", "--kafka-addr", "127.0.0.1:0", "--data-dir", dir, "--smp", smps,
              "--admin-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    broker_pid = pid;
    atexit(test_broker_stop);
    for (int i = 0; i < 400; i++) { /* 20 s */
        usleep(50000);
        FILE *f = fopen(logp, "r");
        char line[1024];
        while (f && fgets(line, sizeof(line), f)) {
            char *r = strstr(line, "ready: kafka=");
            if (r && sscanf(r, "ready: kafka=%63s", test_broker_addr) == 1) {
                fclose(f);
                return 0;
            }
        }
        if (f) fclose(f);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            broker_pid = 0;
            fprintf(stderr, "    broker exited before ready (see %s)\n", logp);
            return -1;
        }
    }
    return -1;
}
