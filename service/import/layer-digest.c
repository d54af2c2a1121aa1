/* SPDX-License-Identifier: Apache-2.0 */
#include "layer-digest.h"

#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

bool kiln_hex64_is_valid(const char *s)
{
        if (!s)
                return false;
        for (size_t i = 0; i < KILN_LAYER_DIGEST_LENGTH; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false; /* also stops at a short string's NUL */
        return s[KILN_LAYER_DIGEST_LENGTH] == '\0';
}

static void put_u8(GChecksum *c, uint8_t v)
{
        g_checksum_update(c, &v, 1);
}

static void put_u32(GChecksum *c, uint32_t v)
{
        uint32_t le = GUINT32_TO_LE(v);
        g_checksum_update(c, (const guchar *)&le, sizeof(le));
}

static void put_u64(GChecksum *c, uint64_t v)
{
        uint64_t le = GUINT64_TO_LE(v);
        g_checksum_update(c, (const guchar *)&le, sizeof(le));
}

static void put_bytes(GChecksum *c, const void *data, size_t len)
{
        g_assert(len <= UINT32_MAX);
        put_u32(c, (uint32_t)len);
        if (len > 0)
                g_checksum_update(c, data, (gssize)len);
}

void kiln_layer_hash_begin(GChecksum *c)
{
        static const char magic[] = "kiln-layer-v1\n";
        g_checksum_update(c, (const guchar *)magic, sizeof(magic) - 1);
}

void kiln_layer_hash_link(GChecksum *c, const char *path, const char *first_path)
{
        put_u8(c, 'E');
        put_bytes(c, path, strlen(path));
        put_u8(c, 'L');
        put_bytes(c, first_path, strlen(first_path));
}

void kiln_layer_hash_meta(GChecksum *c, const char *path, uint32_t mode, uint32_t uid, uint32_t gid,
                          int64_t mtime_sec, uint32_t mtime_nsec, const KilnXattr *xattrs, size_t n_xattrs)
{
        put_u8(c, 'E');
        put_bytes(c, path, strlen(path));
        put_u8(c, 'M');
        put_u32(c, mode);
        put_u32(c, uid);
        put_u32(c, gid);
        put_u64(c, (uint64_t)mtime_sec);
        put_u32(c, mtime_nsec);
        put_u32(c, (uint32_t)n_xattrs);
        for (size_t i = 0; i < n_xattrs; i++) {
                put_bytes(c, xattrs[i].name, strlen(xattrs[i].name));
                put_bytes(c, xattrs[i].value, xattrs[i].size);
        }
}

void kiln_layer_hash_symlink(GChecksum *c, const char *target, size_t len)
{
        put_bytes(c, target, len);
}

void kiln_layer_hash_device(GChecksum *c, dev_t rdev)
{
        put_u32(c, major(rdev));
        put_u32(c, minor(rdev));
}

void kiln_layer_hash_content_size(GChecksum *c, uint64_t size)
{
        put_u64(c, size);
}

void kiln_layer_hash_zero_blocks(GChecksum *c, uint64_t n_blocks)
{
        put_u8(c, 'Z');
        put_u64(c, n_blocks);
}

void kiln_layer_hash_data_block(GChecksum *c, const void *data, size_t len)
{
        put_u8(c, 'D');
        put_bytes(c, data, len);
}

void kiln_layer_hash_end(GChecksum *c, uint64_t n_entries)
{
        put_u8(c, 'X');
        put_u64(c, n_entries);
}

char *kiln_layer_empty_digest(void)
{
        g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);

        kiln_layer_hash_begin(c);
        kiln_layer_hash_meta(c, "", S_IFDIR | KILN_LAYER_EMPTY_MODE, 0, 0, 0, 0, NULL, 0);
        kiln_layer_hash_end(c, 1);
        return g_strdup(g_checksum_get_string(c));
}
