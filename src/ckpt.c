/* ckpt: Hugging Face checkpoint directories: config.json plus safetensors
 * shards, mmap'd read-only.
 *
 * Trust nothing in a file. A safetensors image is an 8-byte little-endian
 * header length N, N bytes of JSON, then the data region; every tensor's
 * dtype, shape and data_offsets are checked against each other and against
 * the data region, and no two tensors may share a byte, before any pointer
 * into the mapping is handed out. Every failure names the file, the tensor
 * where there is one, and what to do.
 *
 * Memory: each shard is mapped once (PROT_READ, MAP_PRIVATE) and never
 * copied; the tensor table and all the names are one allocation.
 * Reading order: safetensors parsing (pure), then the directory (I/O).
 */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MB: real headers are well under 10 MB */
#define CKPT_MAX_JSON ((size_t)64 << 20)    /* config.json, index: a few KB to a few MB */

/* ---------------------------------------------------------------- safetensors */

/* One header entry while the header is being checked. */
struct st_ent {
	struct ckpt_tensor t;
	size_t name_len;
	uint64_t begin, end; /* data_offsets, relative to the data region */
};

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = v << 8 | p[k];
	return v;
}

static int dtype_from_name(const char *s, enum ts_dtype *out)
{
	for (int t = 0; t < TS_DTYPE_N; t++) {
		if (strcmp(s, ts_dtype_name((enum ts_dtype)t)) == 0) {
			*out = (enum ts_dtype)t;
			return 0;
		}
	}
	return -E_UNSUPPORTED;
}

/* Renders a shape as "[a, b, c]" for messages. */
static const char *shape_str(const struct ckpt_tensor *t, char *buf, size_t n)
{
	size_t o = (size_t)snprintf(buf, n, "[");
	for (int d = 0; d < t->n_dims && o < n; d++)
		o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
	if (o < n)
		snprintf(buf + o, n - o, "]");
	return buf;
}

/* dtype and shape of one entry; fills t and returns the byte count in *bytes. */
static int parse_dtype_shape(const char *path, const char *name, const struct json_val *v,
			     struct ckpt_tensor *t, uint64_t *bytes, struct ts_err *e)
{
	const char *dt = json_str(json_get(v, "dtype"), NULL);
	const struct json_val *shape = json_get(v, "shape");
	if (!dt)
		return ts_errf(e, E_FORMAT, "%s: tensor '%s': \"dtype\" is missing or not a string; the file is damaged: download it again",
			       path, name);
	if (dtype_from_name(dt, &t->dtype) < 0)
		return ts_errf(e, E_UNSUPPORTED, "%s: tensor '%s' has dtype %.32s, which is not supported (supported: F32, F16, BF16; "
			       "F8_*, I64, I32 and other dtypes are not): use a bf16 or f16 checkpoint", path, name, dt);
	if (json_type(shape) != JSON_ARR)
		return ts_errf(e, E_FORMAT, "%s: tensor '%s': \"shape\" is missing or not an array; the file is damaged: download it again",
			       path, name);
	if (json_len(shape) > CKPT_MAX_DIMS)
		return ts_errf(e, E_UNSUPPORTED, "%s: tensor '%s' has %d dimensions; at most %d are supported",
			       path, name, json_len(shape), CKPT_MAX_DIMS);
	uint64_t count = 1, limit = (uint64_t)INT64_MAX / ts_dtype_size(t->dtype);
	t->n_dims = json_len(shape);
	for (int d = 0; d < t->n_dims; d++) {
		int64_t x;
		if (json_int64(json_at(shape, d), &x) < 0 || x < 0)
			return ts_errf(e, E_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer; the file is damaged: download it again",
				       path, name, d);
		if (x && count > limit / (uint64_t)x)
			return ts_errf(e, E_FORMAT, "%s: tensor '%s': the element count of its shape overflows 64 bits; the file is damaged",
				       path, name);
		count *= (uint64_t)x;
		t->shape[d] = x;
	}
	*bytes = count * ts_dtype_size(t->dtype);
	return 0;
}

/* Checks one header entry against the data region of data_len bytes. */
static int parse_entry(const char *path, const char *name, const struct json_val *v, uint64_t data_len,
		       struct st_ent *s, struct ts_err *e)
{
	const struct json_val *off = json_get(v, "data_offsets");
	int64_t b = 0, x = 0;
	uint64_t bytes = 0;
	char sh[160];
	if (json_type(v) != JSON_OBJ)
		return ts_errf(e, E_FORMAT, "%s: tensor '%s': header entry is not an object with \"dtype\", \"shape\" and \"data_offsets\"; "
			       "the file is damaged: download it again", path, name);
	int rc = parse_dtype_shape(path, name, v, &s->t, &bytes, e);
	if (rc)
		return rc;
	if (json_type(off) != JSON_ARR || json_len(off) != 2 || json_int64(json_at(off, 0), &b) < 0 ||
	    json_int64(json_at(off, 1), &x) < 0 || b < 0 || x < 0)
		return ts_errf(e, E_FORMAT, "%s: tensor '%s': \"data_offsets\" is missing or not two non-negative integers; "
			       "the file is damaged: download it again", path, name);
	s->begin = (uint64_t)b;
	s->end = (uint64_t)x;
	if (s->begin > s->end)
		return ts_errf(e, E_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] begin after they end; the file is damaged",
			       path, name, (unsigned long long)s->begin, (unsigned long long)s->end);
	if (s->end > data_len)
		return ts_errf(e, E_FORMAT, "%s: tensor '%s': data_offsets end at byte %llu but the data region holds only %llu bytes; "
			       "the file is truncated: download it again", path, name, (unsigned long long)s->end,
			       (unsigned long long)data_len);
	if (s->end - s->begin != bytes)
		return ts_errf(e, E_FORMAT, "%s: tensor '%s': data_offsets span %llu bytes but shape %s of %s needs %llu; "
			       "the file is damaged: download it again", path, name,
			       (unsigned long long)(s->end - s->begin), shape_str(&s->t, sh, sizeof(sh)),
			       ts_dtype_name(s->t.dtype), (unsigned long long)bytes);
	s->t.bytes = bytes;
	return 0;
}

static int cmp_ent_name(const void *a, const void *b)
{
	return strcmp(((const struct st_ent *)a)->t.name, ((const struct st_ent *)b)->t.name);
}

static int cmp_ent_offset(const void *a, const void *b)
{
	const struct st_ent *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

/* Sorted by name: no name twice. Then sorted by offset: no shared byte
 * (empty tensors own no bytes and are skipped). Leaves ents in offset order. */
static int check_unique(const char *path, struct st_ent *ents, int n, struct ts_err *e)
{
	qsort(ents, (size_t)n, sizeof(*ents), cmp_ent_name);
	for (int i = 1; i < n; i++)
		if (strcmp(ents[i - 1].t.name, ents[i].t.name) == 0)
			return ts_errf(e, E_FORMAT, "%s: tensor '%s' appears twice in the header; the file is damaged",
				       path, ents[i].t.name);
	qsort(ents, (size_t)n, sizeof(*ents), cmp_ent_offset);
	const struct st_ent *prev = NULL;
	for (int i = 0; i < n; i++) {
		if (ents[i].begin == ents[i].end)
			continue;
		if (prev && ents[i].begin < prev->end)
			return ts_errf(e, E_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap; the file is damaged",
				       path, prev->t.name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
				       ents[i].t.name, (unsigned long long)ents[i].begin, (unsigned long long)ents[i].end);
		prev = &ents[i];
	}
	return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
	return strcmp(((const struct ckpt_tensor *)a)->name, ((const struct ckpt_tensor *)b)->name);
}

/* Packs the checked entries and their names into one allocation, sorted by name. */
static int pack_tensors(const struct st_ent *ents, int n, const uint8_t *data, struct ckpt_tensor **out,
			struct ts_err *e, const char *path)
{
	size_t bytes = (size_t)n * sizeof(**out);
	for (int i = 0; i < n; i++)
		bytes += ents[i].name_len + 1;
	struct ckpt_tensor *t = ts_alloc(bytes);
	if (!t)
		return ts_errf(e, E_NOMEM, "%s: out of memory for the table of %d tensors", path, n);
	char *names = (char *)(t + n);
	for (int i = 0; i < n; i++) {
		t[i] = ents[i].t;
		memcpy(names, ents[i].t.name, ents[i].name_len + 1);
		t[i].name = names;
		t[i].data = data + ents[i].begin;
		t[i].shard = 0;
		names += ents[i].name_len + 1;
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_tensor_name);
	*out = t;
	return 0;
}

/* Checks every member of the header object into ents[0..*n). */
static int parse_header(const char *path, const struct json_val *root, uint64_t data_len, struct st_ent *ents,
			int *n, struct ts_err *e)
{
	*n = 0;
	for (int i = 0; i < json_len(root); i++) {
		size_t len;
		const char *name = json_key_at(root, i, &len);
		if (strlen(name) != len)
			return ts_errf(e, E_FORMAT, "%s: tensor '%s...' has a NUL byte in its name; the file is damaged",
				       path, name);
		if (strcmp(name, "__metadata__") == 0)
			continue;
		struct st_ent *s = &ents[(*n)++];
		memset(s, 0, sizeof(*s));
		s->t.name = name;
		s->name_len = len;
		int rc = parse_entry(path, name, json_at(root, i), data_len, s, e);
		if (rc)
			return rc;
	}
	return 0;
}

int ckpt_parse_safetensors(const uint8_t *buf, size_t size, const char *path,
			   struct ckpt_tensor **out, int *n, struct ts_err *e)
{
	struct json_doc *doc = NULL;
	struct st_ent *ents = NULL;
	struct ts_err je;
	int rc, k = 0;
	*out = NULL;
	*n = 0;
	if (size < 8)
		return ts_errf(e, E_FORMAT, "%s: file is %zu bytes, too short for safetensors (an 8-byte header length comes first); "
			       "it is truncated or not safetensors: download it again", path, size);
	uint64_t hlen = le64(buf);
	if (hlen > size - 8)
		return ts_errf(e, E_FORMAT, "%s: header length %llu is more than the %zu bytes that follow it; "
			       "the file is truncated or not safetensors: download it again",
			       path, (unsigned long long)hlen, size - 8);
	if (hlen > ST_MAX_HEADER)
		return ts_errf(e, E_FORMAT, "%s: header length %llu is over the %llu-byte limit; this is not a safetensors file",
			       path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
	if ((rc = json_parse(&doc, path, (const char *)buf + 8, (size_t)hlen, &je)))
		return ts_errf(e, -rc, "%s (in the JSON header of this safetensors file; it is damaged: download it again)",
			       je.msg);
	const struct json_val *root = json_root(doc);
	if (json_type(root) != JSON_OBJ) {
		rc = ts_errf(e, E_FORMAT, "%s: the safetensors header is JSON but not an object; the file is damaged", path);
		goto out_free;
	}
	ents = ts_alloc((size_t)json_len(root) * sizeof(*ents));
	if (!ents) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory for %d header entries", path, json_len(root));
		goto out_free;
	}
	uint64_t data_len = size - 8 - hlen;
	if ((rc = parse_header(path, root, data_len, ents, &k, e)) || (rc = check_unique(path, ents, k, e)))
		goto out_free;
	if ((rc = pack_tensors(ents, k, buf + 8 + hlen, out, e, path)))
		goto out_free;
	*n = k;
out_free:
	ts_free(ents);
	json_free(doc);
	return rc;
}

/* ---------------------------------------------------------------- files */

static char *path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	int slash = a && dir[a - 1] != '/';
	char *p = ts_alloc(a + (size_t)slash + b + 1);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	if (slash)
		p[a] = '/';
	memcpy(p + a + slash, name, b + 1);
	return p;
}

static char *str_dup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = ts_alloc(n);
	return p ? memcpy(p, s, n) : NULL;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Reads a whole (small) file into *out, NUL-terminated. */
static int read_file(const char *path, char **out, size_t *len, struct ts_err *e)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	*out = NULL;
	if (fd < 0)
		return ts_errf(e, E_IO, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = ts_errf(e, E_IO, "%s: not a regular file", path);
		goto out_close;
	}
	if ((size_t)st.st_size > CKPT_MAX_JSON) {
		rc = ts_errf(e, E_FORMAT, "%s: %lld bytes is over the %zu-byte limit for a JSON file here",
			     path, (long long)st.st_size, CKPT_MAX_JSON);
		goto out_close;
	}
	char *buf = ts_alloc((size_t)st.st_size + 1);
	size_t got = 0;
	if (!buf) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", path);
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = FAULT_ERRNO(FAULT_READ, EIO) ? -1 : read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = ts_errf(e, E_IO, "%s: read failed after %zu bytes: %s", path, got,
				     r < 0 ? strerror(errno) : "file shrank");
			ts_free(buf);
			goto out_close;
		}
		got += (size_t)r;
	}
	*out = buf;
	*len = got;
out_close:
	close(fd);
	return rc;
}

/* Reads and parses a JSON file whose root must be an object. */
static int load_json(const char *path, struct json_doc **doc, struct ts_err *e)
{
	char *text = NULL;
	size_t len = 0;
	struct ts_err je;
	int rc = read_file(path, &text, &len, e);
	if (rc)
		return rc;
	rc = json_parse(doc, path, text, len, &je);
	ts_free(text);
	if (rc)
		return ts_errf(e, -rc, "%s (fix the file or download it again)", je.msg);
	if (json_type(json_root(*doc)) != JSON_OBJ) {
		json_free(*doc);
		*doc = NULL;
		return ts_errf(e, E_FORMAT, "%s: the top level is not a JSON object; fix the file or download it again", path);
	}
	return 0;
}

/* Maps s->path read-only. `index` names the index that listed it, if any. */
static int map_shard(struct ckpt_shard *s, const char *index, struct ts_err *e)
{
	struct stat st;
	int fd = open(s->path, O_RDONLY | O_CLOEXEC), rc = 0;
	if (fd < 0) {
		if (index)
			return ts_errf(e, E_IO, "%s lists shard %s, which cannot be opened: %s; download the missing shard",
				       index, s->path, strerror(errno));
		return ts_errf(e, E_IO, "%s: cannot open: %s", s->path, strerror(errno));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = ts_errf(e, E_IO, "%s: not a regular file", s->path);
		goto out_close;
	}
	s->size = (size_t)st.st_size;
	if (s->size) { /* mmap of 0 bytes fails; the parser reports the empty file */
		void *m = FAULT_ERRNO(FAULT_MMAP, ENOMEM) ? MAP_FAILED : mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			rc = ts_errf(e, E_IO, "%s: mmap of %zu bytes failed: %s", s->path, s->size, strerror(errno));
			goto out_close;
		}
		s->map = m;
	}
out_close:
	close(fd);
	return rc;
}

/* ---------------------------------------------------------------- the directory */

/* Shard file names named by the index, sorted and unique. */
struct shard_list {
	const char **names; /* (n) point into the index document */
	int n;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int shard_index(const struct shard_list *l, const char *name)
{
	const char **hit = bsearch(&name, l->names, (size_t)l->n, sizeof(*l->names), cmp_str);
	return hit ? (int)(hit - l->names) : -1;
}

/* Checks weight_map and collects its shard names. */
static int index_shards(const char *index, const struct json_val *wm, struct shard_list *l, struct ts_err *e)
{
	if (json_type(wm) != JSON_OBJ)
		return ts_errf(e, E_FORMAT, "%s: \"weight_map\" is missing or not an object; download the index again", index);
	if (json_len(wm) == 0)
		return ts_errf(e, E_FORMAT, "%s: \"weight_map\" is empty; download the index again", index);
	l->names = ts_alloc((size_t)json_len(wm) * sizeof(*l->names));
	if (!l->names)
		return ts_errf(e, E_NOMEM, "%s: out of memory", index);
	for (int i = 0; i < json_len(wm); i++) {
		size_t len;
		const char *s = json_str(json_at(wm, i), &len);
		const char *t = json_key_at(wm, i, NULL);
		if (!s)
			return ts_errf(e, E_FORMAT, "%s: weight_map[\"%s\"] is not a file name string", index, t);
		if (!len || strlen(s) != len || strchr(s, '/') || strstr(s, ".."))
			return ts_errf(e, E_FORMAT, "%s: weight_map[\"%s\"] names shard \"%s\", which is not a plain file name "
				       "in the checkpoint directory (no '/' or '..' allowed)", index, t, s);
		l->names[i] = s;
	}
	qsort(l->names, (size_t)json_len(wm), sizeof(*l->names), cmp_str);
	for (int i = 0; i < json_len(wm); i++)
		if (l->n == 0 || strcmp(l->names[l->n - 1], l->names[i]) != 0)
			l->names[l->n++] = l->names[i];
	return 0;
}

/* Every tensor the index places in shard X must be in X's header. A shard
 * may hold tensors the index does not list; they are kept. */
static int check_index(const struct ckpt *c, const char *index, const struct json_val *wm,
		       const struct shard_list *l, struct ts_err *e)
{
	for (int i = 0; i < json_len(wm); i++) {
		const char *name = json_key_at(wm, i, NULL);
		const char *shard = json_str(json_at(wm, i), NULL);
		const struct ckpt_tensor *t = ckpt_find(c, name);
		if (!t || t->shard != shard_index(l, shard))
			return ts_errf(e, E_FORMAT, "%s lists tensor '%s' in shard %s, but that shard's header has no such tensor%s%s%s; "
				       "the download is inconsistent: download the checkpoint again", index, name, shard,
				       t ? " (it is in " : "", t ? l->names[t->shard] : "", t ? ")" : "");
	}
	return 0;
}

/* Parses every mapped shard and merges the tables into c->tensors (one
 * allocation, sorted by name); a name in two shards is an error. */
static int merge_shards(struct ckpt *c, struct ts_err *e)
{
	struct ckpt_tensor **parts = ts_alloc((size_t)c->n_shards * sizeof(*parts));
	int *counts = ts_alloc((size_t)c->n_shards * sizeof(*counts));
	size_t total = 0, names = 0;
	int rc = 0;
	if (!parts || !counts) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", c->dir);
		goto out_free;
	}
	for (int s = 0; s < c->n_shards; s++) {
		const struct ckpt_shard *sh = &c->shards[s];
		if ((rc = ckpt_parse_safetensors(sh->map, sh->size, sh->path, &parts[s], &counts[s], e)))
			goto out_free;
		for (int i = 0; i < counts[s]; i++)
			names += strlen(parts[s][i].name) + 1;
		total += (size_t)counts[s];
	}
	if (total > INT32_MAX) {
		rc = ts_errf(e, E_UNSUPPORTED, "%s: %zu tensors is too many", c->dir, total);
		goto out_free;
	}
	c->tensors = ts_alloc(total * sizeof(*c->tensors) + names);
	if (!c->tensors) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory for the table of %zu tensors", c->dir, total);
		goto out_free;
	}
	char *np = (char *)(c->tensors + total);
	for (int s = 0; s < c->n_shards; s++) {
		for (int i = 0; i < counts[s]; i++) {
			struct ckpt_tensor *t = &c->tensors[c->n_tensors++];
			size_t len = strlen(parts[s][i].name) + 1;
			*t = parts[s][i];
			memcpy(np, t->name, len);
			t->name = np;
			t->shard = s;
			np += len;
			c->tensor_bytes += t->bytes;
		}
	}
	qsort(c->tensors, total, sizeof(*c->tensors), cmp_tensor_name);
	for (int i = 1; i < c->n_tensors; i++) {
		const struct ckpt_tensor *a = &c->tensors[i - 1], *b = &c->tensors[i];
		if (strcmp(a->name, b->name) == 0) {
			rc = ts_errf(e, E_FORMAT, "tensor '%s' is in both %s and %s; the checkpoint is inconsistent: download it again",
				     a->name, c->shards[a->shard].path, c->shards[b->shard].path);
			goto out_free;
		}
	}
out_free:
	for (int s = 0; parts && s < c->n_shards; s++)
		ts_free(parts[s]);
	ts_free(parts);
	ts_free(counts);
	return rc;
}

/* Sets up c->shards from the index (sharded checkpoint), maps and parses
 * them, and checks the index against what the shards hold. */
static int open_sharded(struct ckpt *c, const char *index, struct ts_err *e)
{
	struct json_doc *doc = NULL;
	struct shard_list l = { 0 };
	int rc = load_json(index, &doc, e);
	if (rc)
		return rc;
	const struct json_val *wm = json_get(json_root(doc), "weight_map");
	if ((rc = index_shards(index, wm, &l, e)))
		goto out_free;
	c->shards = ts_alloc((size_t)l.n * sizeof(*c->shards));
	if (!c->shards) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", index);
		goto out_free;
	}
	for (int s = 0; s < l.n; s++) {
		c->n_shards++;
		if (!(c->shards[s].path = path_join(c->dir, l.names[s]))) {
			rc = ts_errf(e, E_NOMEM, "%s: out of memory", index);
			goto out_free;
		}
		if ((rc = map_shard(&c->shards[s], index, e)))
			goto out_free;
	}
	if ((rc = merge_shards(c, e)))
		goto out_free;
	rc = check_index(c, index, wm, &l, e);
out_free:
	ts_free(l.names);
	json_free(doc);
	return rc;
}

static int open_single(struct ckpt *c, char *path, struct ts_err *e)
{
	c->shards = ts_alloc(sizeof(*c->shards));
	if (!c->shards) {
		ts_free(path);
		return ts_errf(e, E_NOMEM, "%s: out of memory", c->dir);
	}
	c->n_shards = 1;
	c->shards[0].path = path;
	int rc = map_shard(&c->shards[0], NULL, e);
	return rc ? rc : merge_shards(c, e);
}

int ckpt_open(struct ckpt *c, const char *dir, struct ts_err *e)
{
	struct stat st;
	char *index = NULL, *single = NULL, *config = NULL;
	int rc;
	memset(c, 0, sizeof(*c));
	int found = stat(dir, &st) == 0;
	if (!found || !S_ISDIR(st.st_mode))
		return ts_errf(e, E_IO, "%s: %s; expected a Hugging Face checkpoint directory holding config.json and "
			       "model.safetensors (or model.safetensors.index.json and its shards)",
			       dir, found ? "not a directory" : strerror(errno));
	c->dir = str_dup(dir);
	index = path_join(dir, "model.safetensors.index.json");
	single = path_join(dir, "model.safetensors");
	config = path_join(dir, "config.json");
	if (!c->dir || !index || !single || !config) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", dir);
		goto out_free;
	}
	if (!exists(index) && !exists(single)) {
		rc = ts_errf(e, E_IO, "%s: no model.safetensors or model.safetensors.index.json; expected a Hugging Face "
			     "checkpoint directory holding config.json and model.safetensors (or "
			     "model.safetensors.index.json and the shards it lists)", dir);
		goto out_free;
	}
	if (!exists(config)) {
		rc = ts_errf(e, E_IO, "%s: no config.json; a Hugging Face checkpoint directory holds config.json next to "
			     "the weights: download it too", dir);
		goto out_free;
	}
	if ((rc = load_json(config, &c->config, e)))
		goto out_free;
	if (exists(index)) {
		rc = open_sharded(c, index, e);
	} else {
		rc = open_single(c, single, e);
		single = NULL; /* owned by c->shards now */
	}
out_free:
	ts_free(index);
	ts_free(single);
	ts_free(config);
	if (rc)
		ckpt_close(c);
	return rc;
}

void ckpt_close(struct ckpt *c)
{
	for (int s = 0; s < c->n_shards; s++) {
		if (c->shards[s].map)
			munmap(c->shards[s].map, c->shards[s].size);
		ts_free(c->shards[s].path);
	}
	ts_free(c->shards);
	ts_free(c->tensors);
	json_free(c->config);
	ts_free(c->dir);
	memset(c, 0, sizeof(*c));
}

const struct ckpt_tensor *ckpt_find(const struct ckpt *c, const char *name)
{
	int lo = 0, hi = c->n_tensors;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		int r = strcmp(c->tensors[mid].name, name);
		if (r == 0)
			return &c->tensors[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}
