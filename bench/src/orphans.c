/* Run as the app of an init that is PID 1 of a fresh PID namespace: creates N orphans (double
 * fork; each exits at once and is re-parented to the init), then waits until no zombie is left
 * in the namespace. Prints "<nanoseconds> <zombies left>" and exits 0. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int count_zombies(void) {
    DIR *proc = opendir("/proc");
    if (!proc) return -1;
    int zombies = 0;
    struct dirent *entry;
    char path[300], buffer[256];
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *stat = fopen(path, "r");
        if (!stat) continue;
        size_t n = fread(buffer, 1, sizeof buffer - 1, stat);
        fclose(stat);
        buffer[n] = 0;
        char *close_paren = NULL;
        for (char *p = buffer; *p; p++) if (*p == ')') close_paren = p;
        if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z') zombies++;
    }
    closedir(proc);
    return zombies;
}

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 10000;
    long long start = now_ns();
    for (int i = 0; i < count; i++) {
        pid_t middle = fork();
        if (middle == 0) {
            if (fork() == 0) _exit(0);
            _exit(0);
        }
        if (middle > 0) waitpid(middle, NULL, 0);
    }
    int zombies = count_zombies();
    long long give_up = now_ns() + 30LL * 1000000000LL;
    while (zombies > 0 && now_ns() < give_up) {
        usleep(1000);
        zombies = count_zombies();
    }
    printf("%lld %d\n", now_ns() - start, zombies);
    return 0;
}
