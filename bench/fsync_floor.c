/*
 * fsync_floor: the physical floor of a durable spooling sendmail, for
 * scripts/bench-submit.sh.
 *
 * Reads stdin into a new temporary file in DIR (64 KiB reads), fsync()s it,
 * renames it to its final name in DIR, then fsync()s DIR so the rename is
 * durable too -- the same durability Postern promises before it exits 0.
 * Nothing else: no config, no parsing, no logging.
 *
 * usage: fsync_floor DIR < message      (exit 0, or 75 on any failure)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fsync_floor DIR < message\n");
        return 64;
    }
    const char *dir = argv[1];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char tmp[4096], fin[4096];
    snprintf(tmp, sizeof tmp, "%s/tmp.%d.%ld%09ld", dir, (int)getpid(), (long)ts.tv_sec, ts.tv_nsec);
    snprintf(fin, sizeof fin, "%s/msg.%d.%ld%09ld", dir, (int)getpid(), (long)ts.tv_sec, ts.tv_nsec);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) { perror(tmp); return 75; }
    static char buf[65536];
    ssize_t r;
    while ((r = read(0, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(fd, buf + off, (size_t)(r - off));
            if (w <= 0) { perror("write"); unlink(tmp); return 75; }
            off += w;
        }
    }
    if (r < 0 || fsync(fd) != 0 || close(fd) != 0) { perror("fsync"); unlink(tmp); return 75; }
    if (rename(tmp, fin) != 0) { perror("rename"); unlink(tmp); return 75; }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) { perror("fsync dir"); return 75; }
    close(dfd);
    return 0;
}
