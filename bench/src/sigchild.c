/* A child for the signal-latency benchmark: prints "ready", then for every SIGUSR1 writes the
 * CLOCK_MONOTONIC time its handler ran, in nanoseconds, one line each. SIGTERM ends it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void on_usr1(int signal_number) {
    (void)signal_number;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char line[32];
    int n = 0;
    unsigned long long ns = (unsigned long long)now.tv_sec * 1000000000ULL + (unsigned long long)now.tv_nsec;
    char digits[24];
    int d = 0;
    do { digits[d++] = (char)('0' + ns % 10); ns /= 10; } while (ns > 0);
    while (d > 0) line[n++] = digits[--d];
    line[n++] = '\n';
    (void)!write(1, line, (size_t)n);
}

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_usr1;
    sigaction(SIGUSR1, &action, NULL);
    (void)!write(1, "ready\n", 6);
    for (;;) pause();
}
