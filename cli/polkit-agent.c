/* SPDX-License-Identifier: Apache-2.0 */
/* pkttyagent for the user at the terminal.
 *
 * polkit asks for a password through an authentication agent registered for the caller's session
 * or process. A desktop session has one; a text login or an ssh session usually has none, so, as
 * systemctl does, kiln starts polkit's text agent for itself: pkttyagent registers for its parent
 * process (kiln), which is the subject kilnd asks polkit about, and prompts on the controlling
 * terminal.
 *
 * In a logind session it runs with --fallback, so that an agent the session already has (a desktop's
 * dialog) is asked instead. Outside of one (a container, an ssh login without pam_systemd) it must
 * not: polkitd considers fallback agents only after it has found the subject's session, and would
 * never ask this one. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-login.h>

#include "cli-util.h"
#include "base/kiln-common.h"
#include "polkit-agent.h"

#define PKTTYAGENT_PATH "/usr/bin/pkttyagent"

/* The descriptor pkttyagent closes once it has registered; it becomes 3 in the agent. */
#define AGENT_NOTIFY_FD 3

/* How long to wait for the agent to register. It connects to the system bus and registers with
 * polkitd, which may have to be started first; past this we go on, and the call may find the agent
 * registered by the time polkit needs it. */
#define AGENT_REGISTER_TIMEOUT_USEC (10 * G_USEC_PER_SEC)

/* How long the agent has to leave on SIGTERM (it restores the terminal first) before SIGKILL. */
#define AGENT_STOP_TIMEOUT_USEC (2 * G_USEC_PER_SEC)

static pid_t agent_pid; /* 0: no agent runs */

/* A copy of fd above stdin, stdout and stderr (which may be closed, so that a new descriptor can
 * land there), so that putting descriptors in place in the child cannot overwrite another. */
static int fd_above_stdio(int fd)
{
        int copy;

        if (fd < 0 || fd > STDERR_FILENO)
                return fd;
        copy = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        close(fd);
        return copy;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static G_NORETURN void exec_agent(pid_t parent, int notify_fd, int null_fd, bool stdout_tty, bool stderr_tty,
                                  char *const *argv)
{
        sigset_t none;

        /* When kiln is killed its atexit handler does not run: the kernel stops the agent then. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
                _exit(EXIT_FAILURE);
        /* kiln may have died before that took effect; the agent would then outlive it. pkttyagent
         * refuses to run for a parent that is gone too, but it would look for one first. */
        if (getppid() != parent)
                _exit(EXIT_SUCCESS);

        /* The signal mask and ignored signals survive exec; the agent must be stoppable by SIGTERM
         * and leave on ^C like the rest of the foreground job. */
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        (void)signal(SIGTERM, SIG_DFL);
        (void)signal(SIGINT, SIG_DFL);
        (void)signal(SIGHUP, SIG_DFL);

        /* pkttyagent prompts on /dev/tty. A pipe or file that is kiln's stdout or stderr must not
         * stay open in the agent: a caller reading kiln's output to its end would wait for it. */
        if (!stdout_tty && dup2(null_fd, STDOUT_FILENO) < 0)
                _exit(EXIT_FAILURE);
        if (!stderr_tty && dup2(null_fd, STDERR_FILENO) < 0)
                _exit(EXIT_FAILURE);
        if (notify_fd == AGENT_NOTIFY_FD) {
                if (fcntl(notify_fd, F_SETFD, 0) < 0)
                        _exit(EXIT_FAILURE);
        } else if (dup2(notify_fd, AGENT_NOTIFY_FD) < 0)
                _exit(EXIT_FAILURE);
        /* Ours are all close-on-exec; this catches what kiln itself inherited open. */
        (void)close_range(AGENT_NOTIFY_FD + 1, ~0U, 0);

        execv(PKTTYAGENT_PATH, argv);
        _exit(127);
}

/* Waits until the agent closes its end of the pipe: it has registered, or has given up. */
static void wait_for_registration(int fd)
{
        gint64 deadline = g_get_monotonic_time() + AGENT_REGISTER_TIMEOUT_USEC;

        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                gint64 left = deadline - g_get_monotonic_time();
                int n;

                if (left <= 0)
                        return;
                n = poll(&p, 1, (int)((left + 999) / 1000));
                if (n < 0 && errno == EINTR)
                        continue;
                /* Readable, hung up, an error, or the time is up: in every case we go on. */
                return;
        }
}

/* pkttyagent prompts on /dev/tty: without a controlling terminal it has nowhere to (and says so on
 * stderr). */
static bool have_controlling_terminal(void)
{
        _cleanup_close_ int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

        return fd >= 0;
}

void kiln_polkit_agent_open(void)
{
        static bool tried;
        _cleanup_close_ int null_fd = -1, read_fd = -1, write_fd = -1;
        static char *const argv_fallback[] = {
                (char *)PKTTYAGENT_PATH,
                (char *)"--notify-fd",
                (char *)G_STRINGIFY(AGENT_NOTIFY_FD),
                (char *)"--fallback",
                NULL,
        };
        char *const *argv = argv_fallback;
        char *session = NULL;
        bool stdout_tty, stderr_tty;
        int fds[2];
        pid_t parent, pid;

        if (tried)
                return;
        tried = true;

        /* kilnd grants root everything without asking. */
        if (geteuid() == 0)
                return;
        if (access(PKTTYAGENT_PATH, X_OK) < 0 || !have_controlling_terminal())
                return;

        null_fd = fd_above_stdio(open("/dev/null", O_WRONLY | O_CLOEXEC));
        if (null_fd < 0 || pipe2(fds, O_CLOEXEC) < 0) {
                kiln_log("cannot start %s: %s", PKTTYAGENT_PATH, g_strerror(errno));
                return;
        }
        read_fd = fds[0];
        write_fd = fd_above_stdio(fds[1]);
        if (write_fd < 0) {
                kiln_log("cannot start %s: %s", PKTTYAGENT_PATH, g_strerror(errno));
                return;
        }

        if (sd_pid_get_session(0, &session) < 0) {
                static char *const argv_no_session[] = {
                        (char *)PKTTYAGENT_PATH,
                        (char *)"--notify-fd",
                        (char *)G_STRINGIFY(AGENT_NOTIFY_FD),
                        NULL,
                };

                argv = argv_no_session;
        }
        free(session);

        stdout_tty = isatty(STDOUT_FILENO) == 1;
        stderr_tty = isatty(STDERR_FILENO) == 1;
        parent = getpid();
        pid = fork();
        if (pid < 0) {
                kiln_log("cannot start %s: %s", PKTTYAGENT_PATH, g_strerror(errno));
                return;
        }
        if (pid == 0)
                exec_agent(parent, write_fd, null_fd, stdout_tty, stderr_tty, argv);

        agent_pid = pid;
        atexit(kiln_polkit_agent_close);

        /* Only the agent's copy may keep the pipe open: closed, it reads as the end of the pipe. */
        close(kiln_steal_fd(&write_fd));
        wait_for_registration(read_fd);
}

void kiln_polkit_agent_close(void)
{
        pid_t pid = agent_pid;
        gint64 deadline;

        if (pid <= 0)
                return;
        agent_pid = 0;

        (void)kill(pid, SIGTERM);
        (void)kill(pid, SIGCONT); /* a stopped agent (^Z) acts on SIGTERM once it runs */

        deadline = g_get_monotonic_time() + AGENT_STOP_TIMEOUT_USEC;
        for (;;) {
                pid_t r = waitpid(pid, NULL, WNOHANG);

                if (r == pid || (r < 0 && errno != EINTR))
                        return;
                if (g_get_monotonic_time() >= deadline)
                        break;
                g_usleep(10 * 1000);
        }
        /* It restores the terminal on SIGTERM, which can block on a terminal nobody reads. */
        (void)kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}
