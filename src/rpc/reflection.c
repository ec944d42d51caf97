/*
 * gRPC Server Reflection: answers ServerReflectionRequests from the FileDescriptorSet that protoc
 * wrote at build time (gen/ent_descriptors.pb, linked in as ent_rpc_reflection_fds).
 *
 * At start the set is split into its files without re-encoding them, because clients must get
 * each FileDescriptorProto exactly as protoc serialized it; each file is then decoded once with
 * descriptor.proto's generated code to learn its name, its dependencies and every symbol it
 * declares. Requests are answered from those tables with slices of the embedded bytes, so an
 * answer costs a few arena allocations and no copy of the descriptors.
 *
 * v1alpha and v1 share the message layout byte for byte, so the v1alpha generated code decodes
 * and encodes both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ent/pbarena.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "rpc/reflection.h"

/* grpc::StatusCode values carried in ErrorResponse.error_code. */
#define STATUS_INVALID_ARGUMENT 3
#define STATUS_NOT_FOUND	5

/* Longest piece of a client's name quoted back in an error message. */
#define ERR_NAME_MAX 128

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest refl_req;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse refl_resp;

#define REQ(x)	GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

/* What entd serves, in the order list_services reports them. Each must be declared in the set. */
static const char *const served_services[] = {
	"ent.v1.EntitlementService",
	"ent.v1.AdminService",
	"grpc.health.v1.Health",
	"grpc.reflection.v1alpha.ServerReflection",
	"grpc.reflection.v1.ServerReflection",
};
#define N_SERVED (sizeof(served_services) / sizeof(served_services[0]))

enum sym_kind {
	SYM_MESSAGE,
	SYM_FIELD,
	SYM_ONEOF,
	SYM_ENUM,
	SYM_ENUM_VALUE,
	SYM_SERVICE,
	SYM_METHOD,
	SYM_EXTENSION,
};

struct refl_file {
	const uint8_t *bytes; /**< the serialized FileDescriptorProto, inside the set */
	size_t len;
	char *name;	/**< "ent/v1/entitlement.proto" */
	uint32_t *deps; /**< indices of the files it imports */
	size_t n_deps;
};

struct refl_sym {
	char *name; /**< fully qualified, without a leading dot */
	uint32_t file;
	enum sym_kind kind;
};

/*
 * The tables. Written only by ent_rpc_reflection_init_set() and ent_rpc_reflection_deinit(), which
 * run before the server threads start and after they stop; in between everything here is read-only,
 * which is what lets any number of rpc threads answer at once without a lock.
 *
 * Invariants while ready: files[].bytes point into the caller's set (borrowed, never freed
 * here); every deps[] entry is a valid file index; syms is sorted by name (bsearch); services[]
 * are the prebuilt list_services entries, pointing at the served_services literals.
 */
static struct {
	bool ready;
	struct refl_file *files;
	size_t n_files;
	struct refl_sym *syms;
	size_t n_syms, cap_syms;
	Grpc__Reflection__V1alpha__ServiceResponse services[N_SERVED];
	Grpc__Reflection__V1alpha__ServiceResponse *service_ptrs[N_SERVED];
} g;

/* ---- splitting the set ------------------------------------------------------------------ */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -ENT_ECORRUPT;
}

/*
 * Calls fn for every `repeated FileDescriptorProto file = 1` of a FileDescriptorSet. Only the
 * outer message is walked by hand: it is the one place where the exact bytes matter.
 */
static int split_set(const uint8_t *p, size_t len, int (*fn)(const uint8_t *, size_t, void *),
		     void *ctx)
{
	const uint8_t *end = p + len;
	while (p < end) {
		uint64_t tag, n;
		if (read_varint(&p, end, &tag) != 0)
			return -ENT_ECORRUPT;
		switch (tag & 7) {
		case 0:
			if (read_varint(&p, end, &n) != 0)
				return -ENT_ECORRUPT;
			break;
		case 1:
			if (end - p < 8)
				return -ENT_ECORRUPT;
			p += 8;
			break;
		case 2:
			if (read_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
				return -ENT_ECORRUPT;
			if (tag >> 3 == 1) {
				int rc = fn(p, (size_t)n, ctx);
				if (rc != 0)
					return rc;
			}
			p += n;
			break;
		case 5:
			if (end - p < 4)
				return -ENT_ECORRUPT;
			p += 4;
			break;
		default:
			return -ENT_ECORRUPT;
		}
	}
	return 0;
}

/* ---- building the tables ------------------------------------------------------------------ */

static char *join(const char *scope, const char *name)
{
	size_t a = strlen(scope), b = strlen(name);
	char *s = malloc(a + 1 + b + 1);
	if (!s)
		return NULL;
	if (a) {
		memcpy(s, scope, a);
		s[a++] = '.';
	}
	memcpy(s + a, name, b + 1);
	return s;
}

/* Adds scope.name; on success returns the new name (owned by the table) through \a out. */
static int add_sym(const char *scope, const char *name, uint32_t file, enum sym_kind kind,
		   const char **out)
{
	if (!name || !*name)
		return -ENT_ECORRUPT;
	if (g.n_syms == g.cap_syms) {
		size_t cap = g.cap_syms ? g.cap_syms * 2 : 256;
		struct refl_sym *s = realloc(g.syms, cap * sizeof(*s));
		if (!s)
			return -ENT_ENOMEM;
		g.syms = s;
		g.cap_syms = cap;
	}
	char *full = join(scope, name);
	if (!full)
		return -ENT_ENOMEM;
	g.syms[g.n_syms++] = (struct refl_sym){full, file, kind};
	if (out)
		*out = full;
	return 0;
}

/*
 * Enum values are scoped like C++ enumerators: siblings of their enum, so "ent.v1.Reason" has
 * values "ent.v1.REASON_..." rather than "ent.v1.Reason.REASON_...". protoc resolves them so.
 */
static int add_enum(const char *scope, const Google__Protobuf__EnumDescriptorProto *e,
		    uint32_t file)
{
	int rc = add_sym(scope, e->name, file, SYM_ENUM, NULL);
	for (size_t i = 0; rc == 0 && i < e->n_value; i++)
		rc = add_sym(scope, e->value[i]->name, file, SYM_ENUM_VALUE, NULL);
	return rc;
}

static int add_message(const char *scope, const Google__Protobuf__DescriptorProto *m, uint32_t file)
{
	const char *self;
	int rc = add_sym(scope, m->name, file, SYM_MESSAGE, &self);
	for (size_t i = 0; rc == 0 && i < m->n_field; i++)
		rc = add_sym(self, m->field[i]->name, file, SYM_FIELD, NULL);
	for (size_t i = 0; rc == 0 && i < m->n_oneof_decl; i++)
		rc = add_sym(self, m->oneof_decl[i]->name, file, SYM_ONEOF, NULL);
	for (size_t i = 0; rc == 0 && i < m->n_extension; i++)
		rc = add_sym(self, m->extension[i]->name, file, SYM_EXTENSION, NULL);
	for (size_t i = 0; rc == 0 && i < m->n_enum_type; i++)
		rc = add_enum(self, m->enum_type[i], file);
	for (size_t i = 0; rc == 0 && i < m->n_nested_type; i++)
		rc = add_message(self, m->nested_type[i], file);
	return rc;
}

static int add_file_syms(const Google__Protobuf__FileDescriptorProto *fd, uint32_t file)
{
	const char *pkg = fd->package ? fd->package : "";
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < fd->n_message_type; i++)
		rc = add_message(pkg, fd->message_type[i], file);
	for (size_t i = 0; rc == 0 && i < fd->n_enum_type; i++)
		rc = add_enum(pkg, fd->enum_type[i], file);
	for (size_t i = 0; rc == 0 && i < fd->n_extension; i++)
		rc = add_sym(pkg, fd->extension[i]->name, file, SYM_EXTENSION, NULL);
	for (size_t i = 0; rc == 0 && i < fd->n_service; i++) {
		const Google__Protobuf__ServiceDescriptorProto *s = fd->service[i];
		const char *svc;
		rc = add_sym(pkg, s->name, file, SYM_SERVICE, &svc);
		for (size_t k = 0; rc == 0 && k < s->n_method; k++)
			rc = add_sym(svc, s->method[k]->name, file, SYM_METHOD, NULL);
	}
	return rc;
}

static int count_file(const uint8_t *p, size_t len, void *ctx)
{
	(*(size_t *)ctx)++;
	return 0;
}

/* Decodes one file of the set. Dependencies are kept by name until every file is known. */
static int load_file(const uint8_t *p, size_t len, void *ctx)
{
	char ***dep_names = ctx;
	uint32_t idx = (uint32_t)g.n_files;
	Google__Protobuf__FileDescriptorProto *fd =
		google__protobuf__file_descriptor_proto__unpack(NULL, len, p);
	if (!fd)
		return -ENT_ECORRUPT;
	int rc = -ENT_ECORRUPT;
	struct refl_file *f = &g.files[idx];
	if (!fd->name || !*fd->name)
		goto out;
	rc = -ENT_ENOMEM;
	f->bytes = p;
	f->len = len;
	f->name = strdup(fd->name);
	f->deps = calloc(fd->n_dependency ? fd->n_dependency : 1, sizeof(*f->deps));
	dep_names[idx] = calloc(fd->n_dependency + 1, sizeof(char *));
	g.n_files++; /* counted now so deinit frees what was allocated, even on failure */
	if (!f->name || !f->deps || !dep_names[idx])
		goto out;
	for (size_t i = 0; i < fd->n_dependency; i++) {
		if (!(dep_names[idx][i] = strdup(fd->dependency[i])))
			goto out;
		f->n_deps++;
	}
	rc = add_file_syms(fd, idx);
out:
	google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
	return rc;
}

static int find_file(const char *name)
{
	for (size_t i = 0; i < g.n_files; i++)
		if (strcmp(g.files[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int sym_cmp(const void *a, const void *b)
{
	return strcmp(((const struct refl_sym *)a)->name, ((const struct refl_sym *)b)->name);
}

static const struct refl_sym *find_sym(const char *name)
{
	if (name[0] == '.')
		name++;
	struct refl_sym key = {.name = (char *)name};
	return bsearch(&key, g.syms, g.n_syms, sizeof(*g.syms), sym_cmp);
}

/* Import names become file indices once every file of the set is known. */
static int resolve_deps(char ***dep_names)
{
	for (size_t i = 0; i < g.n_files; i++) {
		for (size_t k = 0; k < g.files[i].n_deps; k++) {
			int d = find_file(dep_names[i][k]);
			if (d < 0) {
				/* protoc's --include_imports puts every import in the set, so this
				 * set was not built the way CMakeLists.txt builds it. */
				ent_log(ENT_LOG_ERROR, "reflection: missing dependency", "file",
					g.files[i].name, "import", dep_names[i][k], NULL);
				return -ENT_ECORRUPT;
			}
			g.files[i].deps[k] = (uint32_t)d;
		}
	}
	return 0;
}

/* Sorts the symbols for bsearch and prebuilds the list_services answer. */
static int index_symbols(void)
{
	qsort(g.syms, g.n_syms, sizeof(*g.syms), sym_cmp);
	for (size_t i = 0; i < N_SERVED; i++) {
		const struct refl_sym *s = find_sym(served_services[i]);
		if (!s || s->kind != SYM_SERVICE) {
			/* Listing a service that describe cannot resolve breaks `grpcurl describe`.
			 */
			ent_log(ENT_LOG_ERROR,
				"reflection: served service not in the descriptor set", "service",
				served_services[i], NULL);
			return -ENT_ECORRUPT;
		}
		grpc__reflection__v1alpha__service_response__init(&g.services[i]);
		g.services[i].name = (char *)served_services[i];
		g.service_ptrs[i] = &g.services[i];
	}
	return 0;
}

static void free_dep_names(char ***dep_names)
{
	if (!dep_names)
		return;
	for (size_t i = 0; i < g.n_files; i++) {
		if (!dep_names[i])
			continue;
		for (size_t k = 0; k < g.files[i].n_deps; k++)
			free(dep_names[i][k]);
		free(dep_names[i]);
	}
	free(dep_names);
}

int ent_rpc_reflection_init_set(const uint8_t *fds, size_t len)
{
	if (g.ready)
		return 0;
	if (!fds)
		return -ENT_EINVAL;
	size_t n = 0;
	char ***dep_names = NULL;
	/* Two passes over the set: count, then load into an array of the right size. */
	int rc = split_set(fds, len, count_file, &n);
	if (rc != 0)
		goto out;
	rc = -ENT_ENOMEM;
	g.files = calloc(n ? n : 1, sizeof(*g.files));
	dep_names = calloc(n ? n : 1, sizeof(*dep_names));
	if (!g.files || !dep_names)
		goto out;
	rc = split_set(fds, len, load_file, dep_names);
	if (rc == 0)
		rc = resolve_deps(dep_names);
	if (rc == 0)
		rc = index_symbols();
out:
	/* Before deinit: freeing the names walks g.files. */
	free_dep_names(dep_names);
	if (rc != 0) {
		ent_rpc_reflection_deinit();
		return rc;
	}
	g.ready = true;
	return 0;
}

int ent_rpc_reflection_init(void)
{
	return ent_rpc_reflection_init_set(ent_rpc_reflection_fds, ent_rpc_reflection_fds_len);
}

void ent_rpc_reflection_deinit(void)
{
	for (size_t i = 0; i < g.n_files; i++) {
		free(g.files[i].name);
		free(g.files[i].deps);
	}
	free(g.files);
	for (size_t i = 0; i < g.n_syms; i++)
		free(g.syms[i].name);
	free(g.syms);
	memset(&g, 0, sizeof(g));
}

/* ---- answering ------------------------------------------------------------------------------ */

/* Appends \a f, then everything it imports, each file once (preorder: the asked file first,
 * which is where grpcurl and the grpc-go client look for it). */
static void collect(uint32_t f, bool *seen, ProtobufCBinaryData *out, size_t *n)
{
	if (seen[f])
		return;
	seen[f] = true;
	out[(*n)++] = (ProtobufCBinaryData){g.files[f].len, (uint8_t *)g.files[f].bytes};
	for (size_t i = 0; i < g.files[f].n_deps; i++)
		collect(g.files[f].deps[i], seen, out, n);
}

static int answer_files(refl_resp *r, uint32_t file, struct ent_arena *arena)
{
	Grpc__Reflection__V1alpha__FileDescriptorResponse *fr = ent_arena_alloc(arena, sizeof(*fr));
	bool *seen = ent_arena_alloc(arena, g.n_files * sizeof(*seen));
	ProtobufCBinaryData *out = ent_arena_alloc(arena, g.n_files * sizeof(*out));
	if (!fr || !seen || !out)
		return -ENT_ENOMEM;
	grpc__reflection__v1alpha__file_descriptor_response__init(fr);
	memset(seen, 0, g.n_files * sizeof(*seen));
	collect(file, seen, out, &fr->n_file_descriptor_proto);
	fr->file_descriptor_proto = out;
	r->message_response_case = RESP(FILE_DESCRIPTOR_RESPONSE);
	r->file_descriptor_response = fr;
	return 0;
}

/*
 * Error answers quote the client's name, but only as printable ASCII and only so much of it:
 * error_message is a proto3 string, and a client that decodes strictly (Go) rejects a whole
 * response carrying invalid UTF-8.
 */
static int answer_error(refl_resp *r, int code, const char *what, const char *name,
			struct ent_arena *arena)
{
	Grpc__Reflection__V1alpha__ErrorResponse *e = ent_arena_alloc(arena, sizeof(*e));
	char *msg = ent_arena_alloc(arena, 64 + ERR_NAME_MAX + 4);
	if (!e || !msg)
		return -ENT_ENOMEM;
	grpc__reflection__v1alpha__error_response__init(e);
	size_t n = (size_t)snprintf(msg, 64, "%s", what);
	if (name) {
		msg[n++] = ':';
		msg[n++] = ' ';
		size_t k = 0;
		for (; name[k] && k < ERR_NAME_MAX; k++) {
			unsigned char c = (unsigned char)name[k];
			msg[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
		if (name[k])
			msg[n++] = '~';
	}
	msg[n] = '\0';
	e->error_code = code;
	e->error_message = msg;
	r->message_response_case = RESP(ERROR_RESPONSE);
	r->error_response = e;
	return 0;
}

static int answer_request(refl_resp *r, const refl_req *rq, struct ent_arena *arena)
{
	switch (rq->message_request_case) {
	case REQ(LIST_SERVICES): {
		Grpc__Reflection__V1alpha__ListServiceResponse *ls =
			ent_arena_alloc(arena, sizeof(*ls));
		if (!ls)
			return -ENT_ENOMEM;
		grpc__reflection__v1alpha__list_service_response__init(ls);
		/* Packing only reads, so the shared prebuilt entries serve every thread. */
		ls->n_service = N_SERVED;
		ls->service = g.service_ptrs;
		r->message_response_case = RESP(LIST_SERVICES_RESPONSE);
		r->list_services_response = ls;
		return 0;
	}
	case REQ(FILE_BY_FILENAME): {
		const char *name = rq->file_by_filename ? rq->file_by_filename : "";
		int f = find_file(name);
		if (f < 0)
			return answer_error(r, STATUS_NOT_FOUND, "file not found", name, arena);
		return answer_files(r, (uint32_t)f, arena);
	}
	case REQ(FILE_CONTAINING_SYMBOL): {
		const char *name = rq->file_containing_symbol ? rq->file_containing_symbol : "";
		const struct refl_sym *s = find_sym(name);
		if (!s)
			return answer_error(r, STATUS_NOT_FOUND, "symbol not found", name, arena);
		return answer_files(r, s->file, arena);
	}
	case REQ(FILE_CONTAINING_EXTENSION): {
		const char *type = rq->file_containing_extension &&
						   rq->file_containing_extension->containing_type
					   ? rq->file_containing_extension->containing_type
					   : "";
		return answer_error(r, STATUS_NOT_FOUND, "no extensions are defined for type", type,
				    arena);
	}
	case REQ(ALL_EXTENSION_NUMBERS_OF_TYPE): {
		const char *name =
			rq->all_extension_numbers_of_type ? rq->all_extension_numbers_of_type : "";
		const struct refl_sym *s = find_sym(name);
		if (!s || s->kind != SYM_MESSAGE)
			return answer_error(r, STATUS_NOT_FOUND, "message type not found", name,
					    arena);
		/* A known message with no extensions: an empty list, as grpc-go and C++ answer. */
		Grpc__Reflection__V1alpha__ExtensionNumberResponse *en =
			ent_arena_alloc(arena, sizeof(*en));
		if (!en)
			return -ENT_ENOMEM;
		grpc__reflection__v1alpha__extension_number_response__init(en);
		en->base_type_name = s->name;
		r->message_response_case = RESP(ALL_EXTENSION_NUMBERS_RESPONSE);
		r->all_extension_numbers_response = en;
		return 0;
	}
	default:
		return answer_error(r, STATUS_INVALID_ARGUMENT, "no known request is set", NULL,
				    arena);
	}
}

int ent_rpc_reflection_answer(const uint8_t *req, size_t len, struct ent_arena *arena,
			      uint8_t **resp, size_t *resp_len)
{
	if ((!req && len) || !arena || !resp || !resp_len)
		return -ENT_EINVAL;
	if (!g.ready)
		return -ENT_EUNAVAIL;
	ProtobufCAllocator alloc;
	ent_pb_allocator(&alloc, arena);
	/* protobuf-c wants a non-NULL buffer even for an empty message. */
	static const uint8_t empty[1];
	refl_req *rq = grpc__reflection__v1alpha__server_reflection_request__unpack(
		&alloc, len, req ? req : empty);

	refl_resp r;
	grpc__reflection__v1alpha__server_reflection_response__init(&r);
	int rc;
	if (!rq) {
		rc = answer_error(&r, STATUS_INVALID_ARGUMENT, "malformed ServerReflectionRequest",
				  NULL, arena);
	} else {
		/* The protocol echoes the request, so a client pipelining requests on one stream
		 * can pair each answer with its question. */
		if (rq->host)
			r.valid_host = rq->host;
		/* Fields we do not know are not echoed: protobuf-c keeps some a strict decoder
		 * rejects (field number 0), which would make the whole answer undecodable. */
		rq->base.n_unknown_fields = 0;
		if (rq->message_request_case == REQ(FILE_CONTAINING_EXTENSION) &&
		    rq->file_containing_extension)
			rq->file_containing_extension->base.n_unknown_fields = 0;
		r.original_request = rq;
		rc = answer_request(&r, rq, arena);
	}
	if (rc != 0)
		return rc;

	size_t n = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&r);
	uint8_t *buf = ent_arena_alloc(arena, n ? n : 1);
	if (!buf)
		return -ENT_ENOMEM;
	*resp_len = grpc__reflection__v1alpha__server_reflection_response__pack(&r, buf);
	*resp = buf;
	return 0;
}
