// What forward.c and half.c share: the partner of each descriptor, closing a pair, and dying with
// errno's text. Define PROG (the program's name, for messages) before including it.
#ifndef BATON_BENCH_PAIRS_H
#define BATON_BENCH_PAIRS_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_FD 65536

static int partner_of[MAX_FD];

static int die(const char *what) {
  fprintf(stderr, PROG ": %s: %s\n", what, strerror(errno));
  return 1;
}

/* Closes fd and its partner, out of the epoll set first. */
static void close_pair(int ep, int fd) {
  int other = partner_of[fd];
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  partner_of[fd] = -1;
  if (other >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, other, NULL);
    close(other);
    partner_of[other] = -1;
  }
}

#endif
