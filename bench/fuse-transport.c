/*
 * The FUSE transport alone, for `scripts/bench transport`: a minimal server (one file, "f",
 * under the root; every entry and attribute valid for 0 s) answering LOOKUP and GETATTR over
 * one of four device loops, so a stat() loop times the kernel round trip and nothing else.
 *
 *   fuse-transport MNT dev-block   read(/dev/fuse) sleeps until a request comes
 *   fuse-transport MNT dev-spin    after each reply, keeps reading the device without
 *                                  blocking for SPIN_US (as ovshift's device loop does), then
 *                                  sleeps in poll() until a request comes
 *   fuse-transport MNT uring-wait  FUSE over io_uring: commit the reply and wait for the next
 *                                  request in one io_uring_enter()
 *   fuse-transport MNT uring-spin  FUSE over io_uring: after each commit, ask for completions
 *                                  for SPIN_US (running the ring's deferred work), then wait
 *
 * Mounts MNT itself, prints "ready" once requests flow over the chosen transport, and exits
 * when MNT is unmounted. io_uring needs the fuse module's enable_uring parameter set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SPIN_US 50
#define NO_REPLY 1

/* FUSE over io_uring (protocol 7.42), which the C library headers here predate. */
#define INIT_OVER_IO_URING (1ULL << 41)
#define URING_CMD_REGISTER 1
#define URING_CMD_COMMIT_AND_FETCH 2
struct uring_ent_in_out {
  uint64_t flags;
  uint64_t commit_id;
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};
struct uring_req_header {
  char in_out[128];
  char op_in[128];
  struct uring_ent_in_out ent;
};
struct uring_cmd_req {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};

enum mode { DEV_BLOCK, DEV_SPIN, URING_WAIT, URING_SPIN };
static enum mode mode;
static int dev;
static char request[1 << 20], reply[4096];

static void die(const char *what) {
  perror(what);
  exit(1);
}

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void attr_of(uint64_t ino, struct fuse_attr *a) {
  memset(a, 0, sizeof *a);
  a->ino = ino;
  a->mode = ino == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0644;
  a->nlink = 1;
  a->blksize = 4096;
}

/* Answers the request in `request` into `reply`: the body's length, -errno, or NO_REPLY. */
static int answer(void) {
  const struct fuse_in_header *h = (const void *)request;
  const char *arg = request + sizeof *h;
  switch (h->opcode) {
  case FUSE_INIT: {
    const struct fuse_init_in *in = (const void *)arg;
    struct fuse_init_out *out = (void *)reply;
    uint64_t offered = in->flags | (uint64_t)in->flags2 << 32;
    uint64_t want = FUSE_ASYNC_READ | FUSE_INIT_EXT | (mode >= URING_WAIT ? INIT_OVER_IO_URING : 0);
    if (mode >= URING_WAIT && !(offered & INIT_OVER_IO_URING)) {
      fprintf(stderr, "fuse-transport: the kernel does not offer FUSE over io_uring (fuse.enable_uring)\n");
      exit(3);
    }
    want &= offered;
    memset(out, 0, sizeof *out);
    out->major = FUSE_KERNEL_VERSION;
    out->minor = in->minor < FUSE_KERNEL_MINOR_VERSION ? in->minor : FUSE_KERNEL_MINOR_VERSION;
    out->max_readahead = in->max_readahead;
    out->flags = (uint32_t)want;
    out->flags2 = (uint32_t)(want >> 32);
    out->max_background = 16;
    out->congestion_threshold = 12;
    out->max_write = 128 * 1024;
    out->time_gran = 1;
    out->max_pages = 32;
    return sizeof *out;
  }
  case FUSE_LOOKUP: {
    if (h->nodeid != FUSE_ROOT_ID || strcmp(arg, "f") != 0) return -ENOENT;
    struct fuse_entry_out *out = (void *)reply;
    memset(out, 0, sizeof *out);
    out->nodeid = 2;
    out->generation = 1;
    attr_of(2, &out->attr);
    return sizeof *out;
  }
  case FUSE_GETATTR: {
    struct fuse_attr_out *out = (void *)reply;
    memset(out, 0, sizeof *out);
    attr_of(h->nodeid, &out->attr);
    return sizeof *out;
  }
  case FUSE_FORGET:
  case FUSE_BATCH_FORGET:
  case FUSE_INTERRUPT:
    return NO_REPLY;
  case FUSE_DESTROY:
    return 0;
  default:
    return -ENOSYS;
  }
}

/* A request read from the device (non-blocking: dev-spin) within SPIN_US, else one read after
 * sleeping in poll() until the device is readable. */
static ssize_t read_spinning(void) {
  uint64_t until = now_us() + SPIN_US;
  ssize_t n;
  while ((n = read(dev, request, sizeof request)) < 0 && errno == EAGAIN && now_us() < until) {
  }
  if (n >= 0 || errno != EAGAIN) return n;
  struct pollfd p = { .fd = dev, .events = POLLIN };
  if (poll(&p, 1, -1) < 0) return -1;
  return read(dev, request, sizeof request);
}

/* Serves one request from /dev/fuse; returns 0 once the mount is gone. */
static int serve_device(int block) {
  ssize_t n = block ? read(dev, request, sizeof request) : read_spinning();
  if (n < 0) {
    if (errno == EINTR || errno == ENOENT || errno == EAGAIN) return 1;
    if (errno == ENODEV) return 0;
    die("read /dev/fuse");
  }
  const struct fuse_in_header *h = (const void *)request;
  int r = answer();
  if (r == NO_REPLY) return 1;
  struct fuse_out_header out = { .len = sizeof out + (r > 0 ? r : 0), .error = r < 0 ? r : 0, .unique = h->unique };
  struct iovec iov[2] = { { &out, sizeof out }, { reply, r > 0 ? (size_t)r : 0 } };
  if (writev(dev, iov, 2) < 0 && errno != ENOENT) die("write /dev/fuse");
  return h->opcode != FUSE_DESTROY;
}

/* One registered ring entry: its header and payload buffers, on the queue of CPU `qid`. */
struct entry {
  struct uring_req_header header;
  struct iovec iov[2];
  uint16_t qid;
};
#define ENTRIES_PER_QUEUE 2
#define PAYLOAD (128 * 1024 + 4096)

static struct io_uring ring;

static void queue_cmd(struct entry *e, uint32_t op, uint64_t commit_id) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) die("io_uring_get_sqe");
  memset(sqe, 0, 2 * sizeof *sqe); /* an SQE128 slot */
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = dev;
  sqe->cmd_op = op;
  sqe->addr = (uint64_t)(uintptr_t)e->iov;
  sqe->len = 2;
  sqe->user_data = (uint64_t)(uintptr_t)e;
  struct uring_cmd_req *cmd = (void *)sqe->cmd;
  cmd->qid = e->qid;
  cmd->commit_id = commit_id;
}

static void serve_ring(void) {
  int cpus = (int)sysconf(_SC_NPROCESSORS_CONF);
  unsigned flags = IORING_SETUP_SQE128 | (mode == URING_SPIN ? IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN : 0);
  int err = io_uring_queue_init(4 * cpus * ENTRIES_PER_QUEUE, &ring, flags);
  if (err < 0) {
    errno = -err;
    die("io_uring_queue_init");
  }
  struct entry *entries = calloc((size_t)cpus * ENTRIES_PER_QUEUE, sizeof *entries);
  for (int i = 0; i < cpus * ENTRIES_PER_QUEUE; i++) {
    struct entry *e = &entries[i];
    e->qid = (uint16_t)(i / ENTRIES_PER_QUEUE);
    e->iov[0] = (struct iovec){ &e->header, sizeof e->header };
    e->iov[1] = (struct iovec){ aligned_alloc(4096, PAYLOAD), PAYLOAD };
    queue_cmd(e, URING_CMD_REGISTER, 0);
  }
  if ((err = io_uring_submit(&ring)) < 0) {
    errno = -err;
    die("register ring entries");
  }
  printf("ready\n");
  fflush(stdout);
  for (uint64_t served = 0;; served++) {
    struct io_uring_cqe *cqe;
    if (mode == URING_SPIN) {
      uint64_t until = now_us() + SPIN_US;
      while (io_uring_peek_cqe(&ring, &cqe) != 0 && now_us() < until) io_uring_get_events(&ring);
    }
    if (io_uring_peek_cqe(&ring, &cqe) != 0 && (err = io_uring_wait_cqe(&ring, &cqe)) < 0) {
      if (err == -EINTR) continue;
      errno = -err;
      die("io_uring_wait_cqe");
    }
    struct entry *e = (void *)(uintptr_t)cqe->user_data;
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (res == -ENOTCONN || res == -ECONNABORTED || res == -ENODEV) return;
    if (res < 0) {
      errno = -res;
      die("ring entry");
    }
    /* Forgets still come over /dev/fuse: drained now and then, they need no answer. */
    if (served % 1024 == 0)
      while (read(dev, request, sizeof request) > 0) {
      }
    /* The request as /dev/fuse would give it: header, the opcode's struct, the rest. */
    struct fuse_in_header *h = (void *)e->header.in_out;
    uint32_t payload = e->header.ent.payload_sz;
    uint32_t op_size = h->len - (uint32_t)sizeof *h - payload;
    memcpy(request, h, sizeof *h);
    memcpy(request + sizeof *h, e->header.op_in, op_size);
    memcpy(request + sizeof *h + op_size, e->iov[1].iov_base, payload);
    int r = answer();
    struct fuse_out_header *out = (void *)e->header.in_out;
    out->len = sizeof *out + (r > 0 ? r : 0);
    out->error = r < 0 ? r : 0;
    out->unique = e->header.ent.commit_id;
    if (r > 0) memcpy(e->iov[1].iov_base, reply, r);
    e->header.ent.payload_sz = r > 0 ? r : 0;
    queue_cmd(e, URING_CMD_COMMIT_AND_FETCH, e->header.ent.commit_id);
    if (mode == URING_WAIT) err = io_uring_submit_and_wait(&ring, 1);
    else err = io_uring_submit(&ring);
    if (err < 0 && err != -EINTR) {
      errno = -err;
      die("commit");
    }
  }
}

int main(int argc, char **argv) {
  static const char *const modes[] = { "dev-block", "dev-spin", "uring-wait", "uring-spin" };
  if (argc != 3) {
    fprintf(stderr, "usage: fuse-transport MNT dev-block|dev-spin|uring-wait|uring-spin\n");
    return 2;
  }
  int m = 0;
  while (m < 4 && strcmp(argv[2], modes[m]) != 0) m++;
  if (m == 4) {
    fprintf(stderr, "fuse-transport: unknown transport %s\n", argv[2]);
    return 2;
  }
  mode = (enum mode)m;
  dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (dev < 0) die("/dev/fuse");
  char options[128];
  snprintf(options, sizeof options, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", dev);
  if (mount("fuse-transport", argv[1], "fuse.fuse-transport", MS_NOSUID | MS_NODEV, options) < 0) die("mount");
  serve_device(1); /* INIT always comes over /dev/fuse */
  if (mode < URING_WAIT) {
    if (mode == DEV_SPIN && fcntl(dev, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
    printf("ready\n");
    fflush(stdout);
    while (serve_device(mode == DEV_BLOCK)) {
    }
    return 0;
  }
  if (fcntl(dev, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
  serve_ring();
  return 0;
}
