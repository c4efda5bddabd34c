/*
 * The benchmark workloads, run as a child process so that the process serving a FUSE mount
 * never also drives it. Compiled at run time by bench/lib/helper.ts. Each command times only
 * its own work (CLOCK_MONOTONIC, after setup) and prints one JSON line: {"ns":N,"count":N}.
 *
 *   fstat N FILE              N fstat() calls on one open fd (one GETATTR each, attr timeout 0)
 *   stat N PATH               N stat() calls on a path (LOOKUP + GETATTR each, timeouts 0)
 *   read FILE BLOCK           read FILE to its end, BLOCK bytes per read(); count = bytes
 *   walk DIR                  lstat every entry below DIR; count = entries
 *   readall DIR BLOCK         read every regular file below DIR; count = bytes
 *   write FILE BYTES BLOCK    create FILE and write BYTES to it, BLOCK per write(); count = bytes
 *   create-unlink DIR N       create N empty files in DIR, then unlink them; count = N
 *   append FILE               append one byte to FILE (a copy-up on an overlay); count = 1
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *path) {
  fprintf(stderr, "workload: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static char *alloc_block(size_t size) {
  void *buf;
  if (posix_memalign(&buf, 4096, size) != 0) {
    fprintf(stderr, "workload: out of memory\n");
    exit(1);
  }
  memset(buf, 0x5a, size);
  return buf;
}

static long long read_fd(int fd, char *buf, size_t block, const char *path) {
  long long total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, block);
    if (n < 0) die("read", path);
    if (n == 0) return total;
    total += n;
  }
}

/* Visits every entry below the directory open as `dirfd`: lstat (fstatat, no follow) of each,
 * and with a buffer, reads each regular file. Returns entries seen, adds bytes to *bytes. */
static long long walk(int dirfd, const char *path, char *buf, size_t block, long long *bytes) {
  DIR *dir = fdopendir(dirfd);
  if (!dir) die("fdopendir", path);
  long long entries = 0;
  struct dirent *de;
  while ((errno = 0, de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) die("lstat", de->d_name);
    entries++;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY);
      if (sub < 0) die("open", de->d_name);
      entries += walk(sub, de->d_name, buf, block, bytes);
    } else if (buf && S_ISREG(st.st_mode)) {
      int fd = openat(dirfd, de->d_name, O_RDONLY);
      if (fd < 0) die("open", de->d_name);
      *bytes += read_fd(fd, buf, block, de->d_name);
      close(fd);
    }
  }
  if (errno) die("readdir", path);
  closedir(dir);
  return entries;
}

static int open_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) die("open", path);
  return fd;
}

static void usage(void) {
  fprintf(stderr, "usage: workload fstat|stat|read|walk|readall|write|create-unlink|append ARGS…\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 3) usage();
  const char *cmd = argv[1];
  long long count = 0;
  long long start, end;

  if (strcmp(cmd, "fstat") == 0 && argc == 4) {
    long long n = atoll(argv[2]);
    int fd = open(argv[3], O_RDONLY);
    if (fd < 0) die("open", argv[3]);
    struct stat st;
    start = now_ns();
    for (count = 0; count < n; count++)
      if (fstat(fd, &st) < 0) die("fstat", argv[3]);
    end = now_ns();
  } else if (strcmp(cmd, "stat") == 0 && argc == 4) {
    long long n = atoll(argv[2]);
    struct stat st;
    start = now_ns();
    for (count = 0; count < n; count++)
      if (stat(argv[3], &st) < 0) die("stat", argv[3]);
    end = now_ns();
  } else if (strcmp(cmd, "read") == 0 && argc == 4) {
    size_t block = (size_t)atoll(argv[3]);
    char *buf = alloc_block(block);
    start = now_ns();
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) die("open", argv[2]);
    count = read_fd(fd, buf, block, argv[2]);
    close(fd);
    end = now_ns();
  } else if (strcmp(cmd, "walk") == 0 && argc == 3) {
    start = now_ns();
    count = walk(open_dir(argv[2]), argv[2], NULL, 0, NULL);
    end = now_ns();
  } else if (strcmp(cmd, "readall") == 0 && argc == 4) {
    size_t block = (size_t)atoll(argv[3]);
    char *buf = alloc_block(block);
    start = now_ns();
    walk(open_dir(argv[2]), argv[2], buf, block, &count);
    end = now_ns();
  } else if (strcmp(cmd, "write") == 0 && argc == 5) {
    long long bytes = atoll(argv[3]);
    size_t block = (size_t)atoll(argv[4]);
    char *buf = alloc_block(block);
    start = now_ns();
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) die("create", argv[2]);
    while (count < bytes) {
      size_t want = bytes - count < (long long)block ? (size_t)(bytes - count) : block;
      ssize_t n = write(fd, buf, want);
      if (n <= 0) die("write", argv[2]);
      count += n;
    }
    if (close(fd) < 0) die("close", argv[2]);
    end = now_ns();
  } else if (strcmp(cmd, "create-unlink") == 0 && argc == 4) {
    long long n = atoll(argv[3]);
    int dirfd = open_dir(argv[2]);
    char name[32];
    start = now_ns();
    for (long long i = 0; i < n; i++) {
      snprintf(name, sizeof name, "f%lld", i);
      int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) die("create", name);
      close(fd);
    }
    for (long long i = 0; i < n; i++) {
      snprintf(name, sizeof name, "f%lld", i);
      if (unlinkat(dirfd, name, 0) < 0) die("unlink", name);
    }
    end = now_ns();
    count = n;
  } else if (strcmp(cmd, "append") == 0 && argc == 3) {
    start = now_ns();
    int fd = open(argv[2], O_WRONLY | O_APPEND);
    if (fd < 0) die("open", argv[2]);
    if (write(fd, "x", 1) != 1) die("write", argv[2]);
    if (close(fd) < 0) die("close", argv[2]);
    end = now_ns();
    count = 1;
  } else {
    usage();
  }
  printf("{\"ns\":%lld,\"count\":%lld}\n", end - start, count);
  return 0;
}
