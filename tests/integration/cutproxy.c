/*
 * cutproxy.c - a TCP proxy between one kheo client and kheod that counts
 * the bytes each way, can cut the connection after N of them, and can
 * alter bytes at given offsets; for tests/integration/tiers.sh.
 *
 *   cutproxy [options] PORTFILE TARGET_PORT
 *
 *   -c N        cut after N bytes (both directions counted together): the
 *               N-th byte is forwarded, then both connections are closed
 *   -k PID      at the cut, first SIGKILL the process PID (kheod)
 *   -d MS       with -k: kill MS milliseconds after the N-th byte, the
 *               bytes flowing meanwhile as usual (if both sides close
 *               before, nobody is killed: the caller kills)
 *   -w FILE     write the bytes the client sent to FILE (for a replay)
 *   -t FILE     trace: one line per piece forwarded, "C n" (client to
 *               server) or "S n", in the order they were forwarded
 *   -p OFF:HEX  overwrite the client's bytes from stream offset OFF
 *   -P OFF:HEX  the same for the server's bytes (at most 8 of -p and -P)
 *
 * It listens on 127.0.0.1 at a port of the kernel's choice, writes the
 * port to PORTFILE (atomically, so a reader sees all of it or nothing),
 * accepts one connection, connects to 127.0.0.1:TARGET_PORT and forwards
 * until both sides have closed (half-closes are passed on).  At the end it
 * prints on stdout
 *
 *   cs BYTES sc BYTES cut 0|1
 *   C SIZE SIZE ...       the client's secretstream records, on the wire
 *   S SIZE SIZE ...       the server's
 *
 * A record's size is its 4 length bytes plus the ciphertext
 * (docs/protocol.md, 11.4).  The parse skips the fixed-size handshake and
 * the stream header of each direction (client: msg1 64, msg3 112, header
 * 24; server: announce 36, msg2 64, msg4 80, header 24); a record cut
 * short is not listed.  Nothing here decrypts: it sees what a router on
 * the path sees.
 *
 * Not a general proxy: one connection, IPv4 loopback, 30 s to be called.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define MAX_PATCH 8
#define MAX_REC 4096

struct patch {
	int dir;             /* 0: client's bytes, 1: server's */
	uint64_t off;
	uint8_t b[64];
	size_t n;
};

/* One direction: bytes read from `from` and not yet written to `to`. */
struct dir {
	int from, to;
	uint8_t buf[BUF];
	size_t have, at;
	uint64_t total;      /* bytes forwarded (read) so far */
	int eof;             /* `from` is done; shut `to` once flushed */
	int shut;
	/* the record parse */
	uint64_t skip;       /* handshake and header bytes left to skip */
	uint8_t len[4];
	size_t lenhave;
	uint64_t recleft;    /* ciphertext bytes left of this record */
	uint64_t rec[MAX_REC];
	size_t nrec;
	char tag;
};

static struct patch patches[MAX_PATCH];
static size_t npatches;

static void die(const char *what)
{
	fprintf(stderr, "cutproxy: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void add_patch(int dir, const char *arg)
{
	struct patch *p;
	char *end;
	const char *h;

	if (npatches == MAX_PATCH) {
		fprintf(stderr, "cutproxy: at most %d patches\n", MAX_PATCH);
		exit(2);
	}
	p = &patches[npatches++];
	p->dir = dir;
	p->off = strtoull(arg, &end, 10);
	if (*end != ':') {
		fprintf(stderr, "cutproxy: %s: want OFFSET:HEX\n", arg);
		exit(2);
	}
	for (h = end + 1; h[0] && h[1] && p->n < sizeof(p->b); h += 2) {
		if (hexval(h[0]) < 0 || hexval(h[1]) < 0)
			break;
		p->b[p->n++] = (uint8_t)(hexval(h[0]) << 4 | hexval(h[1]));
	}
	if (*h || !p->n) {
		fprintf(stderr, "cutproxy: %s: want OFFSET:HEX\n", arg);
		exit(2);
	}
}

/* Apply the patches to bytes [off, off + n) of direction `dir`. */
static void apply_patches(int dir, uint64_t off, uint8_t *p, size_t n)
{
	size_t i, k;

	for (i = 0; i < npatches; i++) {
		if (patches[i].dir != dir)
			continue;
		for (k = 0; k < patches[i].n; k++) {
			uint64_t at = patches[i].off + k;

			if (at >= off && at < off + n)
				p[at - off] = patches[i].b[k];
		}
	}
}

/* Follow the record framing over bytes that went through. */
static void parse(struct dir *d, const uint8_t *p, size_t n)
{
	while (n) {
		size_t take;

		if (d->skip) {
			take = n < d->skip ? n : (size_t)d->skip;
			d->skip -= take;
		} else if (d->recleft) {
			take = n < d->recleft ? n : (size_t)d->recleft;
			d->recleft -= take;
			if (!d->recleft && d->nrec < MAX_REC)
				d->nrec++;      /* the record is whole */
		} else {
			take = 1;
			d->len[d->lenhave++] = *p;
			if (d->lenhave == 4) {
				uint64_t len = (uint64_t)d->len[0] << 24 |
					       (uint64_t)d->len[1] << 16 |
					       (uint64_t)d->len[2] << 8 |
					       d->len[3];

				d->lenhave = 0;
				if (d->nrec < MAX_REC)
					d->rec[d->nrec] = 4 + len;
				d->recleft = len;
				if (!len && d->nrec < MAX_REC)
					d->nrec++;
			}
		}
		p += take;
		n -= take;
	}
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);
	struct dir *d[2];
	uint64_t cut_at = 0;
	int64_t kill_at = -1;
	long kill_pid = 0, delay_ms = 0;
	FILE *wf = NULL, *tf = NULL;
	char tmp[4096];
	int lfd, cfd, sfd, opt, cut = 0, i;
	struct pollfd lp;
	FILE *pf;

	while ((opt = getopt(argc, argv, "c:k:d:w:t:p:P:")) != -1) {
		switch (opt) {
		case 'c':
			cut_at = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			kill_pid = strtol(optarg, NULL, 10);
			break;
		case 'd':
			delay_ms = strtol(optarg, NULL, 10);
			break;
		case 'w':
			if (!(wf = fopen(optarg, "wb")))
				die(optarg);
			break;
		case 't':
			if (!(tf = fopen(optarg, "w")))
				die(optarg);
			break;
		case 'p':
		case 'P':
			add_patch(opt == 'P', optarg);
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: cutproxy [-c N [-k PID [-d MS]]] "
			"[-w FILE] [-t FILE] [-p|-P OFF:HEX] PORTFILE PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		die("socket");
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 4) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0)
		die("listen");
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[optind]);
	if (!(pf = fopen(tmp, "w")))
		die(tmp);
	fprintf(pf, "%u\n", ntohs(sa.sin_port));
	if (fclose(pf) != 0 || rename(tmp, argv[optind]) < 0)
		die(argv[optind]);

	lp.fd = lfd;
	lp.events = POLLIN;
	if (poll(&lp, 1, 30000) != 1) {
		fprintf(stderr, "cutproxy: nobody connected within 30 s\n");
		return 1;
	}
	if ((cfd = accept(lfd, NULL, NULL)) < 0)
		die("accept");
	close(lfd);
	if ((sfd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		die("socket");
	sa.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
	if (connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	nodelay(cfd);
	nodelay(sfd);

	for (i = 0; i < 2; i++) {
		if (!(d[i] = calloc(1, sizeof(*d[i]))))
			die("calloc");
		d[i]->from = i ? sfd : cfd;
		d[i]->to = i ? cfd : sfd;
		d[i]->skip = i ? 36 + 64 + 80 + 24 : 64 + 112 + 24;
		d[i]->tag = i ? 'S' : 'C';
	}

	while (!(d[0]->shut && d[1]->shut)) {
		struct pollfd p[4];
		int np = 0, wait = -1, idx[4];

		if (kill_at >= 0) {
			int64_t left = kill_at - now_ms();

			if (left <= 0) {
				kill((pid_t)kill_pid, SIGKILL);
				cut = 1;
				break;
			}
			wait = (int)left;
		}
		for (i = 0; i < 2; i++) {
			struct dir *x = d[i];

			if (x->at < x->have) {
				p[np].fd = x->to;
				p[np].events = POLLOUT;
				idx[np++] = i + 2;
			} else if (!x->eof) {
				p[np].fd = x->from;
				p[np].events = POLLIN;
				idx[np++] = i;
			} else if (!x->shut) {
				shutdown(x->to, SHUT_WR);
				x->shut = 1;
			}
		}
		if (!np)
			continue;
		if (poll(p, (nfds_t)np, wait) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (i = 0; i < np; i++) {
			struct dir *x = d[idx[i] & 1];
			ssize_t k;

			if (!p[i].revents)
				continue;
			if (idx[i] >= 2) {
				k = write(x->to, x->buf + x->at, x->have - x->at);
				if (k < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (k < 0) {
					/* the other side is gone: so is this */
					x->at = x->have = 0;
					x->eof = 1;
					continue;
				}
				x->at += (size_t)k;
				if (x->at == x->have)
					x->at = x->have = 0;
				continue;
			}
			k = read(x->from, x->buf, BUF);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k <= 0) {
				x->eof = 1;
				continue;
			}
			if (cut_at && kill_at < 0) {
				uint64_t sofar = d[0]->total + d[1]->total;

				if (sofar + (uint64_t)k >= cut_at && kill_pid) {
					kill_at = now_ms() + delay_ms;
				} else if (sofar + (uint64_t)k >= cut_at) {
					k = (ssize_t)(cut_at - sofar);
					cut = 1;
				}
			}
			apply_patches(idx[i], x->total, x->buf, (size_t)k);
			parse(x, x->buf, (size_t)k);
			if (wf && idx[i] == 0)
				fwrite(x->buf, 1, (size_t)k, wf);
			if (tf)
				fprintf(tf, "%c %zd\n", x->tag, k);
			x->total += (uint64_t)k;
			x->have = (size_t)k;
			x->at = 0;
		}
		if (cut) {
			/* forward what was read up to the N-th byte, then cut */
			for (i = 0; i < 2; i++) {
				struct dir *x = d[i];

				while (x->at < x->have) {
					ssize_t k = write(x->to, x->buf + x->at,
						x->have - x->at);

					if (k < 0 && errno == EAGAIN) {
						struct pollfd w = { x->to,
							POLLOUT, 0 };

						poll(&w, 1, 1000);
						continue;
					}
					if (k <= 0)
						break;
					x->at += (size_t)k;
				}
			}
			break;
		}
	}
	close(cfd);
	close(sfd);
	if (wf)
		fclose(wf);
	if (tf)
		fclose(tf);
	printf("cs %llu sc %llu cut %d\n", (unsigned long long)d[0]->total,
		(unsigned long long)d[1]->total, cut);
	for (i = 0; i < 2; i++) {
		size_t r;

		printf("%c", d[i]->tag);
		for (r = 0; r < d[i]->nrec && r < MAX_REC; r++)
			printf(" %llu", (unsigned long long)d[i]->rec[r]);
		printf("\n");
	}
	return 0;
}
