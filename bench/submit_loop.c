/*
 * submit_loop: time N sequential invocations of a command, each from fork()
 * to waitpid() -- what a caller such as PHP or cron waits for -- with no
 * shell or wrapper process in the measured path. Used by
 * scripts/bench-submit.sh for both the fsync floor and Postern.
 *
 * usage: submit_loop -n N -i INPUT -o OUT [-k FIRST] [-e ERRLOG]
 *                    [-E NAME=VALUE]... -- CMD [ARGS...]
 *   -i  stdin of each run; a printf pattern with one %d (e.g. msg-%d.eml)
 *       is given the run's index (FIRST + i), so every run gets its own
 *       message
 *   -o  one line per run: "index latency_us exit_code"
 *   -E  environment of the child (repeatable); otherwise a minimal one
 *   -e  file receiving the children's stdout and stderr (default /dev/null)
 * Prints a summary line: n ok fail median_us p90_us p99_us mean_us.
 * Exits 1 if any run failed (non-zero exit or signal), 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *input = NULL, *out = NULL, *errlog = "/dev/null";
    long n = 0, first = 0;
    char *envp[64];
    int nenv = 0, opt;
    while ((opt = getopt(argc, argv, "+n:i:o:k:e:E:")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'i': input = optarg; break;
        case 'o': out = optarg; break;
        case 'k': first = atol(optarg); break;
        case 'e': errlog = optarg; break;
        case 'E':
            if (nenv >= 60) { fprintf(stderr, "too many -E\n"); return 2; }
            envp[nenv++] = optarg;
            break;
        default: goto usage;
        }
    }
    if (!input || !out || n <= 0 || optind >= argc) {
usage:
        fprintf(stderr, "usage: submit_loop -n N -i INPUT -o OUT [-k FIRST] [-e ERRLOG] [-E NAME=VALUE]... -- CMD [ARGS]\n");
        return 2;
    }
    if (nenv == 0) {
        envp[nenv++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
        envp[nenv++] = "LANG=C";
    }
    envp[nenv] = NULL;
    char **cmd = argv + optind;
    FILE *fo = fopen(out, "we");
    if (!fo) { perror(out); return 2; }
    int errfd = open(errlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (errfd < 0) { perror(errlog); return 2; }
    double *lat = calloc((size_t)n, sizeof *lat);
    if (!lat) { perror("calloc"); return 2; }
    long ok = 0, fail = 0;
    for (long i = 0; i < n; i++) {
        char path[4096];
        if (strchr(input, '%')) snprintf(path, sizeof path, input, (int)(first + i));
        else snprintf(path, sizeof path, "%s", input);
        int in = open(path, O_RDONLY | O_CLOEXEC);
        if (in < 0) { fprintf(stderr, "open %s: %s\n", path, strerror(errno)); return 2; }
        double t0 = now_us();
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            dup2(in, 0);
            dup2(errfd, 1);
            dup2(errfd, 2);
            execve(cmd[0], cmd, envp);
            _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        double t1 = now_us();
        close(in);
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        lat[i] = t1 - t0;
        fprintf(fo, "%ld %.0f %d\n", first + i, lat[i], code);
        if (code == 0) ok++; else fail++;
    }
    if (fclose(fo) != 0) { perror(out); return 2; }
    double mean = 0;
    for (long i = 0; i < n; i++) mean += lat[i];
    mean /= n;
    qsort(lat, (size_t)n, sizeof *lat, cmp);
#define PCT(p) lat[(long)((n - 1) * (p) + 0.5)]
    printf("n=%ld ok=%ld fail=%ld median_us=%.0f p90_us=%.0f p99_us=%.0f mean_us=%.0f\n",
           n, ok, fail, PCT(0.5), PCT(0.9), PCT(0.99), mean);
    return fail ? 1 : 0;
}
