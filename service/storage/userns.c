/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/kiln-common.h"
#include "base/passwd.h"
#include "storage/userns.h"

/* The allotments file is kilnd's own; the bound only keeps a damaged one from eating memory. */
#define ALLOTMENTS_FILE_MAX (16 * 1024 * 1024)

/* Ids are below (uid_t)-1: a range [start, start + count) may end at G_MAXUINT32 but not past it. */
static gboolean range_fits(guint64 start, guint64 count)
{
        return start + count <= G_MAXUINT32;
}

static gboolean ranges_overlap(guint64 a, guint64 a_count, guint64 b, guint64 b_count)
{
        return a < b + b_count && b < a + a_count;
}

static gboolean range_inside(guint64 start, guint64 count, const KilnIdRange *r)
{
        return start >= r->start && start + count <= (guint64)r->start + r->count;
}

/* ---- subid files ---- */

/* One "NAME_OR_UID:START:COUNT" line. */
typedef struct SubidLine {
        const char *name;
        gsize name_len;
        guint64 start;
        guint64 count;
} SubidLine;

static gboolean parse_number(const char *s, gsize n, guint64 *ret)
{
        guint32 v;

        if (!kiln_parse_uint32(s, n, &v))
                return FALSE;
        *ret = v;
        return TRUE;
}

static gboolean parse_subid_line(const char *line, gsize n, SubidLine *ret)
{
        const char *c1 = memchr(line, ':', n);
        const char *c2 = c1 ? memchr(c1 + 1, ':', n - (gsize)(c1 + 1 - line)) : NULL;
        const char *end = line + n;

        if (!c2 || c1 == line || memchr(c2 + 1, ':', (gsize)(end - c2 - 1)))
                return FALSE;
        ret->name = line;
        ret->name_len = (gsize)(c1 - line);
        return parse_number(c1 + 1, (gsize)(c2 - c1 - 1), &ret->start) &&
               parse_number(c2 + 1, (gsize)(end - c2 - 1), &ret->count);
}

/* Steps through @buf line by line; *line and *n are the next line without its "\n" or "\r\n". */
static gboolean next_line(const char *buf, gsize len, gsize *pos, const char **line, gsize *n)
{
        const char *nl;

        if (*pos >= len)
                return FALSE;
        *line = buf + *pos;
        nl = memchr(*line, '\n', len - *pos);
        *n = nl ? (gsize)(nl - *line) : len - *pos;
        *pos += *n + 1;
        if (*n > 0 && (*line)[*n - 1] == '\r')
                (*n)--;
        return TRUE;
}

static gboolean line_is_blank_or_comment(const char *line, gsize n)
{
        gsize i = 0;

        while (i < n && g_ascii_isspace(line[i]))
                i++;
        return i == n || line[i] == '#';
}

static gboolean subid_line_matches(const SubidLine *l, const char *user, guint32 uid)
{
        guint64 id;

        if (user && l->name_len == strlen(user) && memcmp(l->name, user, l->name_len) == 0)
                return TRUE;
        return parse_number(l->name, l->name_len, &id) && id == uid;
}

/* With @all, every entry counts and a range past the last id is cut there (the pool must avoid
 * whatever anyone may take for theirs); otherwise only @user's or @uid's usable ranges count. */
static GArray *subid_ranges(const char *contents, gsize len, gboolean all, const char *user, guint32 uid)
{
        GArray *ranges = g_array_new(FALSE, FALSE, sizeof(KilnIdRange));
        guint n_malformed = 0, first_malformed = 0, line_no = 0;
        const char *line;
        gsize pos = 0, n;

        while (next_line(contents, len, &pos, &line, &n)) {
                SubidLine l;
                KilnIdRange r;

                line_no++;
                if (line_is_blank_or_comment(line, n))
                        continue;
                if (memchr(line, '\0', n) || !parse_subid_line(line, n, &l)) {
                        if (n_malformed++ == 0)
                                first_malformed = line_no;
                        continue;
                }
                if (l.count == 0 || (!all && !subid_line_matches(&l, user, uid)))
                        continue;
                if (all && l.start < G_MAXUINT32)
                        l.count = MIN(l.count, G_MAXUINT32 - l.start);
                if (!range_fits(l.start, l.count))
                        continue;
                r = (KilnIdRange){(guint32)l.start, (guint32)l.count};
                g_array_append_val(ranges, r);
        }
        if (n_malformed > 0)
                g_debug("subid file: skipped %u malformed line(s), the first is line %u", n_malformed,
                        first_malformed);
        return ranges;
}

GArray *kiln_subid_ranges_for(const char *contents, gsize len, const char *user, guint32 uid)
{
        return subid_ranges(contents, len, FALSE, user, uid);
}

GArray *kiln_subid_ranges_all(const char *contents, gsize len)
{
        return subid_ranges(contents, len, TRUE, NULL, 0);
}

/* ---- the pool ---- */

static int compare_range_start(const void *a, const void *b)
{
        const KilnIdRange *x = a, *y = b;

        return x->start < y->start ? -1 : x->start > y->start;
}

gboolean kiln_id_pool_pick(guint32 pool_start, guint32 pool_size, guint32 range_size,
                           const KilnIdRange *taken, gsize n_taken, guint32 *ret_start)
{
        g_autofree KilnIdRange *sorted = NULL;
        guint64 pool_end, slot = pool_start;

        if (range_size == 0)
                return FALSE;
        pool_end = MIN((guint64)pool_start + (guint64)(pool_size / range_size) * range_size, G_MAXUINT32);
        sorted = g_memdup2(taken, n_taken * sizeof(*taken));
        if (n_taken > 0)
                qsort(sorted, n_taken, sizeof(*sorted), compare_range_start);

        /* In order of start, every taken range that reaches into the candidate slot pushes it to the
         * first slot after the range's end; ranges seen before end at or before the candidate. */
        for (gsize i = 0; i < n_taken && slot + range_size <= pool_end; i++) {
                guint64 start = sorted[i].start, end = start + sorted[i].count;

                if (end <= slot)
                        continue;
                if (start >= slot + range_size)
                        break;
                slot = pool_start + (end - pool_start + range_size - 1) / range_size * range_size;
        }
        if (slot + range_size > pool_end)
                return FALSE;
        *ret_start = (guint32)slot;
        return TRUE;
}

/* ---- maps ---- */

static gboolean line_invalid(GError **error, const char *arg, gsize i, const KilnIdMapping *m,
                             const char *fmt, ...) G_GNUC_PRINTF(5, 6);

static gboolean line_invalid(GError **error, const char *arg, gsize i, const KilnIdMapping *m,
                             const char *fmt, ...)
{
        g_autofree char *reason = NULL;
        va_list ap;

        va_start(ap, fmt);
        reason = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        return kiln_invalid(error, arg, "line %" G_GSIZE_FORMAT " (%u %u %u): %s", i + 1, m->container_id,
                            m->host_id, m->size, reason);
}

static gboolean host_range_allowed(const KilnIdMapping *m, guint32 owner, const KilnIdRange *allowed,
                                   gsize n_allowed)
{
        if (m->host_id == owner && m->size == 1)
                return TRUE;
        for (gsize i = 0; i < n_allowed; i++)
                if (range_inside(m->host_id, m->size, &allowed[i]))
                        return TRUE;
        return FALSE;
}

static gboolean check_line(const char *arg, const KilnIdMapping *map, gsize i, guint32 owner,
                           const KilnIdRange *allowed, gsize n_allowed, GError **error)
{
        const KilnIdMapping *m = &map[i];

        if (m->size == 0)
                return line_invalid(error, arg, i, m, "maps no ids");
        if (!range_fits(m->container_id, m->size))
                return line_invalid(error, arg, i, m, "container ids reach past %u", G_MAXUINT32 - 1);
        if (!range_fits(m->host_id, m->size))
                return line_invalid(error, arg, i, m, "host ids reach past %u", G_MAXUINT32 - 1);
        /* Host id 0 in the map of a non-root owner would hand root's files to the container. */
        if (m->host_id == 0 && owner != 0)
                return line_invalid(error, arg, i, m, "maps host id 0 for owner %u", owner);
        if (!host_range_allowed(m, owner, allowed, n_allowed))
                return line_invalid(error, arg, i, m,
                                    "host ids are neither owner %u nor its subordinate ids", owner);
        for (gsize j = 0; j < i; j++) {
                if (ranges_overlap(m->container_id, m->size, map[j].container_id, map[j].size))
                        return line_invalid(error, arg, i, m, "container ids overlap line %" G_GSIZE_FORMAT,
                                            j + 1);
                /* Two container ids on one host id: the kernel refuses it, and so do we, first. */
                if (ranges_overlap(m->host_id, m->size, map[j].host_id, map[j].size))
                        return line_invalid(error, arg, i, m, "host ids overlap line %" G_GSIZE_FORMAT,
                                            j + 1);
        }
        return TRUE;
}

gboolean kiln_idmap_check(const char *arg, const KilnIdMapping *map, gsize n, guint32 owner,
                          const KilnIdRange *allowed, gsize n_allowed, GError **error)
{
        if (n == 0)
                return kiln_invalid(error, arg, "no lines");
        if (n > KILN_IDMAP_MAX_LINES)
                return kiln_invalid(error, arg, "%" G_GSIZE_FORMAT " lines, the kernel takes at most %d", n,
                                    KILN_IDMAP_MAX_LINES);
        for (gsize i = 0; i < n; i++)
                if (!check_line(arg, map, i, owner, allowed, n_allowed, error))
                        return FALSE;
        return TRUE;
}

gboolean kiln_idmap_to_host(const KilnIdMapping *map, gsize n, guint32 container_id, guint32 *ret_host_id)
{
        for (gsize i = 0; i < n; i++) {
                if (range_inside(container_id, 1, &(KilnIdRange){map[i].container_id, map[i].size})) {
                        *ret_host_id = map[i].host_id + (container_id - map[i].container_id);
                        return TRUE;
                }
        }
        return FALSE;
}

/* Container root is the owner; container ids from 1 are @ranges, one after the other. */
static GArray *build_map(guint32 owner, const GArray *ranges)
{
        GArray *map = g_array_new(FALSE, FALSE, sizeof(KilnIdMapping));
        KilnIdMapping root = {0, owner, 1};
        guint64 next = 1;

        g_array_append_val(map, root);
        for (guint i = 0; i < ranges->len; i++) {
                const KilnIdRange *r = &g_array_index(ranges, KilnIdRange, i);
                /* Past the last id the container id is clamped: kiln_idmap_check() then refuses it. */
                KilnIdMapping m = {(guint32)MIN(next, G_MAXUINT32), r->start, r->count};

                g_array_append_val(map, m);
                next += r->count;
        }
        return map;
}

/* ---- files and accounts ---- */

static gboolean errno_error(GError **error, int err, const char *what, const char *path)
{
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(err), "%s '%s': %s", what, path,
                    g_strerror(err));
        return FALSE;
}

/* Reads the regular file @path, at most @max bytes; a missing file reads as empty (*ret NULL). */
static gboolean read_small_file(const char *path, gsize max, char **ret, gsize *ret_len, GError **error)
{
        /* O_NONBLOCK: a FIFO put in the file's place must not block kilnd; it is refused below. */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        g_autoptr(GString) s = NULL;
        struct stat st;
        char buf[8192];

        *ret = NULL;
        *ret_len = 0;
        if (fd < 0)
                return errno == ENOENT ? TRUE : errno_error(error, errno, "open", path);
        if (fstat(fd, &st) < 0)
                return errno_error(error, errno, "fstat", path);
        if (!S_ISREG(st.st_mode))
                return kiln_fail(error, KILN_ERROR_CODE_FAILED, "userns: %s is not a regular file", path);
        s = g_string_new(NULL);
        for (;;) {
                ssize_t r = read(fd, buf, sizeof(buf));

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return errno_error(error, errno, "read", path);
                if (r == 0)
                        break;
                g_string_append_len(s, buf, r);
                if (s->len > max)
                        return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                         "userns: %s is larger than %" G_GSIZE_FORMAT " bytes", path, max);
        }
        *ret_len = s->len;
        *ret = g_string_free(g_steal_pointer(&s), FALSE);
        return TRUE;
}

/* The host's name of @uid, or NULL: subid entries are then matched by uid only. */
static char *user_name(guint32 uid)
{
        gsize size = 16384;

        for (;;) {
                g_autofree char *buf = g_malloc(size);
                struct passwd pw, *found = NULL;
                int r = getpwuid_r(uid, &pw, buf, size, &found);

                if (r == ERANGE && size < 1024 * 1024) {
                        size *= 2;
                        continue;
                }
                return r == 0 && found ? g_strdup(found->pw_name) : NULL;
        }
}

/* Every account's uid and every group's gid, as ranges of one id. getpwent() keeps one enumeration
 * per process: kilnd enumerates on its main loop only. */
static void add_account_ids(GArray *taken)
{
        struct passwd *pw;
        struct group *gr;

        setpwent();
        while ((pw = getpwent()))
                g_array_append_val(taken, ((KilnIdRange){pw->pw_uid, 1}));
        endpwent();
        setgrent();
        while ((gr = getgrent()))
                g_array_append_val(taken, ((KilnIdRange){gr->gr_gid, 1}));
        endgrent();
}

/* ---- allotments ---- */

typedef struct Allotment {
        guint32 uid;
        KilnIdRange range;
} Allotment;

struct KilnUserns {
        char *subuid_file;
        char *subgid_file;
        guint32 pool_start;
        guint32 pool_size;
        guint32 range_size;
        char *allotments_path;
        GArray *allotments; /* of Allotment, in the order made */
};

/* The contents of a subuid and a subgid file, read once per call. */
typedef struct SubidFiles {
        char *subuid;
        gsize subuid_len;
        char *subgid;
        gsize subgid_len;
} SubidFiles;

static void subid_files_clear(SubidFiles *f)
{
        g_clear_pointer(&f->subuid, g_free);
        g_clear_pointer(&f->subgid, g_free);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(SubidFiles, subid_files_clear)

static gboolean allotments_corrupt(GError **error, const char *path, guint line, const char *reason)
{
        return kiln_fail(error, KILN_ERROR_CODE_FAILED, "userns: %s line %u: %s", path, line, reason);
}

static const Allotment *find_allotment(const KilnUserns *u, guint32 uid)
{
        for (guint i = 0; i < u->allotments->len; i++)
                if (g_array_index(u->allotments, Allotment, i).uid == uid)
                        return &g_array_index(u->allotments, Allotment, i);
        return NULL;
}

/* Each line "UID:START:COUNT", as in the subid files but by uid only. Two uids sharing ids would
 * share files, so overlapping ranges make the file corrupt too. */
static gboolean load_allotments(KilnUserns *u, const char *contents, gsize len, GError **error)
{
        const char *line;
        gsize pos = 0, n;
        guint line_no = 0;

        while (next_line(contents, len, &pos, &line, &n)) {
                SubidLine l;
                guint64 uid;
                Allotment a;

                line_no++;
                if (line_is_blank_or_comment(line, n))
                        continue;
                if (memchr(line, '\0', n) || !parse_subid_line(line, n, &l) ||
                    !parse_number(l.name, l.name_len, &uid))
                        return allotments_corrupt(error, u->allotments_path, line_no,
                                                  "expected UID:START:COUNT");
                if (l.count == 0 || !range_fits(l.start, l.count))
                        return allotments_corrupt(error, u->allotments_path, line_no,
                                                  "not a usable id range");
                if (find_allotment(u, (guint32)uid))
                        return allotments_corrupt(error, u->allotments_path, line_no,
                                                  "a second range for the uid");
                for (guint i = 0; i < u->allotments->len; i++) {
                        const KilnIdRange *r = &g_array_index(u->allotments, Allotment, i).range;
                        if (ranges_overlap(l.start, l.count, r->start, r->count))
                                return allotments_corrupt(error, u->allotments_path, line_no,
                                                          "overlaps the range of another uid");
                }
                a = (Allotment){(guint32)uid, {(guint32)l.start, (guint32)l.count}};
                g_array_append_val(u->allotments, a);
        }
        return TRUE;
}

static gboolean save_allotments(const KilnUserns *u, GError **error)
{
        g_autoptr(GString) s =
                g_string_new("# kilnd's allotments of subordinate ids from the [UserNamespace] pool of\n"
                             "# kiln.conf: UID:START:COUNT. Never given to another uid; edit only\n"
                             "# while kilnd is stopped.\n");

        for (guint i = 0; i < u->allotments->len; i++) {
                const Allotment *a = &g_array_index(u->allotments, Allotment, i);
                g_string_append_printf(s, "%u:%u:%u\n", a->uid, a->range.start, a->range.count);
        }
        /* CONSISTENT+DURABLE: a temporary file, fsynced, renamed over the old one: a crash leaves the
         * old list or the new one, and an allotment in use is on disk before it is used. */
        return g_file_set_contents_full(u->allotments_path, s->str, (gssize)s->len,
                                        G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0600,
                                        error);
}

static void add_file_ranges(GArray *taken, const char *contents, gsize len)
{
        g_autoptr(GArray) ranges = kiln_subid_ranges_all(contents, len);

        g_array_append_vals(taken, ranges->data, ranges->len);
}

/* A new slot for @uid: clear of both files, of every allotment and of every account. The uids of
 * owners without an account (the owner's own, and those with allotments) count as taken too: a slot
 * holding one would let another user's container own their files. */
static gboolean allot(KilnUserns *u, guint32 uid, guint32 gid, const SubidFiles *files, KilnIdRange *ret,
                      GError **error)
{
        g_autoptr(GArray) taken = g_array_new(FALSE, FALSE, sizeof(KilnIdRange));
        Allotment a = {uid, {0, u->range_size}};

        add_file_ranges(taken, files->subuid, files->subuid_len);
        add_file_ranges(taken, files->subgid, files->subgid_len);
        for (guint i = 0; i < u->allotments->len; i++) {
                const Allotment *other = &g_array_index(u->allotments, Allotment, i);
                g_array_append_val(taken, other->range);
                g_array_append_val(taken, ((KilnIdRange){other->uid, 1}));
        }
        g_array_append_val(taken, ((KilnIdRange){uid, 1}));
        g_array_append_val(taken, ((KilnIdRange){gid, 1}));
        add_account_ids(taken);

        if (!kiln_id_pool_pick(u->pool_start, u->pool_size, u->range_size, (KilnIdRange *)taken->data,
                               taken->len, &a.range.start))
                return kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                                 "userns: the id pool is exhausted: no free range of %u ids for user %u in "
                                 "kiln.conf's [UserNamespace] PoolStart=%u PoolSize=%u",
                                 u->range_size, uid, u->pool_start, u->pool_size);
        g_array_append_val(u->allotments, a);
        if (!save_allotments(u, error)) {
                g_array_set_size(u->allotments, u->allotments->len - 1);
                return FALSE;
        }
        g_info("userns: allotted ids %u-%u to user %u", a.range.start, a.range.start + a.range.count - 1,
               uid);
        *ret = a.range;
        return TRUE;
}

/* The pool range of @uid (primary gid @gid), made if needed; @missing_file is where it has no entry. */
static gboolean pool_range(KilnUserns *u, guint32 uid, guint32 gid, const char *missing_file,
                           const SubidFiles *files, KilnIdRange *ret, GError **error)
{
        const Allotment *a = find_allotment(u, uid);

        if (a) {
                *ret = a->range;
                return TRUE;
        }
        if (u->pool_size == 0)
                return kiln_fail(error, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                 "userns: user %u has no subordinate ids in %s and kiln.conf has no pool",
                                 uid, missing_file);
        return allot(u, uid, gid, files, ret, error);
}

KilnUserns *kiln_userns_new(const KilnConfig *config, const char *allotments_path, GError **error)
{
        g_autoptr(KilnUserns) u = g_new0(KilnUserns, 1);
        g_autofree char *contents = NULL;
        gsize len;

        u->subuid_file = g_strdup(config->subuid_file);
        u->subgid_file = g_strdup(config->subgid_file);
        u->pool_start = config->id_pool_start;
        u->pool_size = config->id_pool_size;
        u->range_size = config->id_range_size;
        u->allotments_path = g_strdup(allotments_path);
        u->allotments = g_array_new(FALSE, FALSE, sizeof(Allotment));
        if (!read_small_file(allotments_path, ALLOTMENTS_FILE_MAX, &contents, &len, error) ||
            !load_allotments(u, contents, len, error))
                return NULL;
        return g_steal_pointer(&u);
}

void kiln_userns_free(KilnUserns *u)
{
        if (!u)
                return;
        g_free(u->subuid_file);
        g_free(u->subgid_file);
        g_free(u->allotments_path);
        g_clear_pointer(&u->allotments, g_array_unref);
        g_free(u);
}

gboolean kiln_userns_mappings(KilnUserns *u, guint32 owner, guint32 owner_gid, GArray **ret_uid_map,
                              GArray **ret_gid_map, GError **error)
{
        g_auto(SubidFiles) files = {0};
        g_autofree char *user = user_name(owner);
        g_autoptr(GArray) uid_ranges = NULL, gid_ranges = NULL, uid_map = NULL, gid_map = NULL;
        KilnIdRange pool;

        if (!read_small_file(u->subuid_file, KILN_SUBID_FILE_MAX, &files.subuid, &files.subuid_len, error) ||
            !read_small_file(u->subgid_file, KILN_SUBID_FILE_MAX, &files.subgid, &files.subgid_len, error))
                return FALSE;
        uid_ranges = kiln_subid_ranges_for(files.subuid, files.subuid_len, user, owner);
        gid_ranges = kiln_subid_ranges_for(files.subgid, files.subgid_len, user, owner);

        /* One slot serves both maps: an owner missing from either file gets the same ids in both. */
        if (uid_ranges->len == 0 || gid_ranges->len == 0) {
                if (!pool_range(u, owner, owner_gid, uid_ranges->len == 0 ? u->subuid_file : u->subgid_file,
                                &files, &pool, error))
                        return FALSE;
                if (uid_ranges->len == 0)
                        g_array_append_val(uid_ranges, pool);
                if (gid_ranges->len == 0)
                        g_array_append_val(gid_ranges, pool);
        }

        uid_map = build_map(owner, uid_ranges);
        gid_map = build_map(owner_gid, gid_ranges);
        if (!kiln_idmap_check("uid map", (KilnIdMapping *)uid_map->data, uid_map->len, owner,
                              (KilnIdRange *)uid_ranges->data, uid_ranges->len, error) ||
            !kiln_idmap_check("gid map", (KilnIdMapping *)gid_map->data, gid_map->len, owner_gid,
                              (KilnIdRange *)gid_ranges->data, gid_ranges->len, error))
                return FALSE;
        *ret_uid_map = g_steal_pointer(&uid_map);
        *ret_gid_map = g_steal_pointer(&gid_map);
        return TRUE;
}

void kiln_id_maps_clear(KilnIdMaps *maps)
{
        g_clear_pointer(&maps->uid_map, g_array_unref);
        g_clear_pointer(&maps->gid_map, g_array_unref);
}
