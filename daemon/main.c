/*
 * main.c - kheod: the command line, start-up, signals and the loop.
 *
 *   kheod [-C DIR] [--listen ADDR:PORT] [--upstream HOST:PORT]
 *         [--config FILE] [--foreground] [--check]
 *
 * --check reads the configuration, says what is wrong or "ok", and exits:
 * what an operator runs before a reload.
 *
 * Start-up, in this order: read the configuration (flags win over the
 * file); read the passphrase of node.key while we may still read root's
 * files; bind the listener (a port below 1024 needs root); drop to
 * `user` when started as root; open the node once to check it is one
 * (after the drop, so SQLite's -wal and -shm files belong to the user);
 * bind the control socket; then serve.  Without --foreground the process
 * forks and the parent waits until the child is serving (exit 0) or has
 * failed (its exit status), so that a mistake shows at the terminal that
 * started it; the child then logs to syslog if the log was stderr.
 *
 * Signals (uv_signal, so handlers run on the loop): SIGTERM and SIGINT
 * stop (server.c says how in-flight sessions end; a second one cuts
 * them), SIGHUP re-reads the configuration, SIGUSR1 syncs with the
 * upstream now.  No pid file: systemd and the control socket know where
 * we are.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static struct conf conf;
static const char *config_file;
static struct conf_flag flags[16];
static size_t nflags;
static int foreground, check_only, daemonized, stopping;
static int ready_fd = -1;
static char passphrase[KHEO_PASSPHRASE_MAX + 3];
static uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;

static void usage(FILE *f)
{
	fprintf(f, "usage: kheod [-C DIR] [--listen ADDR:PORT] "
		"[--upstream HOST:PORT]\n"
		"             [--config FILE] [--foreground] [--check]   "
		"(kheo %s)\n\n"
		"Serves the kheo node in DIR ($KHEO_HOME, else ./kheo-data) "
		"to devices and hubs,\nand syncs it with an upstream node. "
		"Flags win over FILE. See kheod(8),\nkheod.conf(5).\n",
		kheo_version());
}

static int log_target(int target)
{
	/* a daemon's stderr is /dev/null */
	return daemonized ? LOG_SYSLOG : target;
}

/* The first line of FILE, or $KHEO_PASSPHRASE, or none. */
static const char *read_passphrase(const char *file)
{
	const char *env = getenv("KHEO_PASSPHRASE");
	FILE *f;
	size_t n;

	if (!file[0])
		return env && *env ? env : NULL;
	if (!(f = fopen(file, "r")))
		fatal("passphrase_file %s: %s", file, strerror(errno));
	n = fread(passphrase, 1, sizeof(passphrase) - 1, f);
	fclose(f);
	passphrase[n] = '\0';
	passphrase[strcspn(passphrase, "\r\n")] = '\0';
	if (!passphrase[0] || strlen(passphrase) > KHEO_PASSPHRASE_MAX)
		fatal("passphrase_file %s: the first line must hold the "
			"passphrase (1 to %d bytes)", file,
			KHEO_PASSPHRASE_MAX);
	return passphrase;
}

static void drop_privileges(const char *user)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return;
	if (!user[0]) {
		log_warn("running as root: set `user` in kheod.conf (or "
			"User= in the systemd unit)");
		return;
	}
	if (!(pw = getpwnam(user)))
		fatal("user %s: no such user", user);
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		fatal("cannot become %s: %s", user, strerror(errno));
	if (setuid(0) == 0)
		fatal("could not drop root privileges");
	log_info("running as %s", user);
}

/* A session holds a socket; each database handle (one per thread of
 * libuv's pool, server.c) SQLite's database, -wal and -shm files: raise
 * the soft limit on descriptors as far as the hard one allows, and say so
 * when max_sessions cannot be reached. */
static void raise_nofile(unsigned sessions)
{
	const char *env = getenv("UV_THREADPOOL_SIZE");
	unsigned long threads = env && *env ? strtoul(env, NULL, 10) : 4;
	rlim_t want = (rlim_t)sessions + 4 * (rlim_t)(threads ? threads : 4)
		      + 64;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ?
		want : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < want)
		log_warn("max_sessions %u needs about %llu file descriptors "
			"and the limit is %llu: raise it (LimitNOFILE= in the "
			"systemd unit, ulimit -n)", sessions,
			(unsigned long long)want,
			(unsigned long long)rl.rlim_cur);
}

/* The node must open; a node that is not enrolled serves no session. */
static void check_node(const char *pass)
{
	kheo_open_options o = KHEO_OPEN_OPTIONS_INIT;
	kheo_db *db = NULL;

	o.log = log_kheo;
	o.passphrase = pass;
	if (kheo_db_open(&db, conf.dir, &o) < 0)
		fatal("%s: %s", conf.dir, kheo_errmsg(db));
	if (!kheo_enforcing(db))
		log_warn("%s is in open mode (not enrolled): every session "
			"will be refused until it is (kheo enroll)", conf.dir);
	kheo_db_close(db);
}

/* Fork; the parent exits with the child's start-up result. */
static void daemonize(void)
{
	int p[2], status;
	pid_t pid;
	char c;

	if (pipe(p) < 0 || (pid = fork()) < 0)
		fatal("cannot fork: %s", strerror(errno));
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &c, 1) == 1)
			_exit(0);
		if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
			_exit(WEXITSTATUS(status));
		_exit(1);
	}
	close(p[0]);
	ready_fd = p[1];
	setsid();
}

/* Serving: let the parent go, and leave the terminal. */
static void ready(void)
{
	int fd;

	if (ready_fd < 0)
		return;
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	daemonized = 1;
	log_setup(log_target(conf.log_target), conf.log_level);
	if (write(ready_fd, "1", 1) != 1)
		log_warn("could not tell the parent process we serve");
	close(ready_fd);
	ready_fd = -1;
}

static void reload(void)
{
	struct conf next;
	char err[512];

	if (conf_load(&next, config_file, flags, nflags, err,
		      sizeof(err)) < 0) {
		log_warn("SIGHUP: %s: keeping the running configuration",
			err);
		return;
	}
	if (strcmp(next.dir, conf.dir) != 0)
		log_warn("SIGHUP: dir changed: restart kheod to serve %s",
			next.dir);
	if (strcmp(next.listen, conf.listen) != 0)
		log_warn("SIGHUP: listen changed: restart kheod to listen on "
			"%s", next.listen[0] ? next.listen : "nothing");
	if (strcmp(next.user, conf.user) != 0 ||
	    strcmp(next.passphrase_file, conf.passphrase_file) != 0)
		log_warn("SIGHUP: user and passphrase_file are read at start "
			"only: restart kheod to apply them");
	/* what is read at start only stays as it was */
	memcpy(next.dir, conf.dir, sizeof(next.dir));
	memcpy(next.listen, conf.listen, sizeof(next.listen));
	memcpy(next.user, conf.user, sizeof(next.user));
	memcpy(next.passphrase_file, conf.passphrase_file,
		sizeof(next.passphrase_file));
	conf = next;
	log_setup(log_target(conf.log_target), conf.log_level);
	raise_nofile(conf.max_sessions);
	server_reconf(&conf);
	upstream_reconf(&conf);
	log_info("SIGHUP: reloaded %s: idle_timeout %u s, max_sessions %u, "
		"max_sessions_per_peer %u, upstream %s", config_file ?
		config_file : "(no file: defaults and flags)",
		conf.idle_timeout, conf.max_sessions,
		conf.max_sessions_per_peer, conf.upstream[0] ?
		conf.upstream : "none");
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)h;
	switch (signum) {
	case SIGHUP:
		reload();
		break;
	case SIGUSR1:
		upstream_now("SIGUSR1");
		break;
	default:
		log_info("%s: stopping", signum == SIGINT ? "SIGINT" :
			"SIGTERM");
		if (!stopping) {
			stopping = 1;
			/* the signal handles no longer keep the loop up */
			uv_unref((uv_handle_t *)&sig_term);
			uv_unref((uv_handle_t *)&sig_int);
			uv_unref((uv_handle_t *)&sig_hup);
			uv_unref((uv_handle_t *)&sig_usr1);
			upstream_stop();
		}
		server_stop();
	}
}

static void on_signal_start(uv_loop_t *loop, uv_signal_t *h, int signum)
{
	uv_signal_init(loop, h);
	uv_signal_start(h, on_signal, signum);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int main(int argc, char **argv)
{
	static char dir_abs[PATH_MAX], conf_abs[PATH_MAX];
	uv_loop_t *loop;
	const char *pass;
	char err[512];
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *key = NULL;

		if (strcmp(a, "-C") == 0)
			key = "dir";
		else if (strcmp(a, "--listen") == 0)
			key = "listen";
		else if (strcmp(a, "--upstream") == 0)
			key = "upstream";
		if (key && i + 1 < argc &&
		    nflags < sizeof(flags) / sizeof(flags[0])) {
			flags[nflags].flag = a;
			flags[nflags].key = key;
			flags[nflags++].value = argv[++i];
		} else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
			config_file = argv[++i];
		} else if (strcmp(a, "--foreground") == 0) {
			foreground = 1;
		} else if (strcmp(a, "--check") == 0) {
			check_only = 1;
		} else if (strcmp(a, "--version") == 0) {
			printf("kheod %s\n", kheo_version());
			return 0;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	/* Absolute paths: a daemon leaves its working directory, and a
	 * reload must find the same file. */
	if (config_file) {
		if (!realpath(config_file, conf_abs))
			fatal("--config %s: %s", config_file, strerror(errno));
		config_file = conf_abs;
	}
	if (conf_load(&conf, config_file, flags, nflags, err,
		      sizeof(err)) < 0)
		fatal("%s", err);
	if (check_only) {
		printf("%s: ok\n", config_file ? config_file :
			"(no file: defaults and flags)");
		return 0;
	}
	if (!realpath(conf.dir, dir_abs))
		fatal("%s: %s (make a node there with kheo init)", conf.dir,
			strerror(errno));
	strf(conf.dir, sizeof(conf.dir), "%s", dir_abs);
	log_setup(conf.log_target, conf.log_level);
	pass = read_passphrase(conf.passphrase_file);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(conf.max_sessions);
	if (!foreground)
		daemonize();

	loop = uv_default_loop();
	if (upstream_probe(conf.dir, err, sizeof(err)) < 0)
		fatal("%s", err);
	if (server_start(loop, &conf, pass, err, sizeof(err)) < 0)
		fatal("%s", err);
	drop_privileges(conf.user);
	check_node(pass);
	if (upstream_start(loop, &conf, err, sizeof(err)) < 0)
		fatal("%s", err);
	on_signal_start(loop, &sig_term, SIGTERM);
	on_signal_start(loop, &sig_int, SIGINT);
	on_signal_start(loop, &sig_hup, SIGHUP);
	on_signal_start(loop, &sig_usr1, SIGUSR1);
	log_info("started (kheo %s): serving %s on %s; upstream %s",
		kheo_version(),
		conf.dir, conf.listen[0] ? conf.listen : "no address",
		conf.upstream[0] ? conf.upstream : "none");
	if (!foreground && chdir("/") < 0)
		log_warn("chdir /: %s", strerror(errno));
	ready();

	uv_run(loop, UV_RUN_DEFAULT);
	/* Only the unref'd signal handles are left. */
	uv_walk(loop, close_walk, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	if (uv_loop_close(loop) < 0)
		log_warn("the loop did not close cleanly");
	explicit_bzero(passphrase, sizeof(passphrase));
	log_info("stopped");
	return 0;
}
