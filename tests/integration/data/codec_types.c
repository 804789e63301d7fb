// Value types that exercise every layout rule the codecs must get right. The test reads their BTF from this
// object (clang is the layout oracle), creates maps with it, writes entries through our codecs and compares with
// what `bpftool map dump` (an independent BTF decoder) prints.
#include <linux/types.h>

enum verdict { PASS = 0, DROP = 1, REDIRECT = 7 };
enum small_enum : __u8 { LOW = 1, HIGH = 200 };

struct padded {          // holes after u8 and u16, trailing padding
	__u8 a;
	__u32 b;
	__u16 c;
	__u64 d;
	__u8 e;
};

struct flow_key {        // the classic 13-byte packed key
	__u32 src_ip;
	__u32 dst_ip;
	__u16 src_port;
	__u16 dst_port;
	__u8 protocol;
} __attribute__((packed));

struct inner {
	__s16 x;
	__s32 y;
};

struct nested {          // nested structs, arrays of structs and of ints, char array
	struct inner one;
	struct inner many[2];
	__u32 counts[3];
	char name[12];
	_Bool up;
	__s8 delta;
};

union addr {
	__u32 v4;
	__u8 v6[16];
};

struct with_union {      // union member, enums of two sizes
	enum verdict verdict;
	union addr addr;
	enum small_enum level;
};

struct bits {            // bitfields across storage units, signed bitfield
	__u32 flag : 1;
	__u32 kind : 3;
	__u32 count : 12;
	__u32 : 0;
	__u16 low : 5;
	__s16 neg : 6;
	__u64 wide : 40;
};

struct packed_mix {      // packed struct holding a non-packed one and an odd-sized field
	__u8 tag;
	struct inner in;
	__u16 port;
} __attribute__((packed));

struct padded v_padded;
struct flow_key v_flow_key;
struct nested v_nested;
struct with_union v_with_union;
struct bits v_bits;
struct packed_mix v_packed_mix;
