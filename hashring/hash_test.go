package hashring

import (
	"slices"
	"strings"
	"testing"
)

// alphabet1500 is "abc…z" repeated to 1500 bytes, the reference table's
// long key (it takes the main loops of every hash many times round).
var alphabet1500 = strings.Repeat("abcdefghijklmnopqrstuvwxyz", 58)[:1500]

// nutcrackerHashes lists nutcracker's twelve hash names in the column order
// of hashValues.
var nutcrackerHashes = [12]string{
	"one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64",
	"fnv1a_64", "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins",
}

// hashValues is the hash-value table of the nutcracker reference §2.3,
// produced by compiling twemproxy's own src/hashkit/*.c on x86-64 (signed
// char). nutcracker never hashes the empty key; its row is the raw function
// value.
var hashValues = []struct {
	key  string
	want [12]uint32
}{
	{"", [12]uint32{0, 3649838548, 0, 0, 0, 2216829733, 2216829733, 2166136261, 2166136261, 0, 0, 3735928572}},
	{"a", [12]uint32{3392050242, 3111502092, 31879, 26807, 3904355907, 2248259518, 2248273036, 84696446, 3826002220, 2472816263, 1262581116, 3768813200}},
	{"foo", [12]uint32{596015325, 3675831724, 205303702, 3187, 2356372769, 1805727027, 4275688823, 1083137555, 2851307223, 1993659431, 3303027599, 2583187353}},
	{"hello", [12]uint32{3372029979, 708854109, 1800389474, 13840, 907060870, 3183334599, 2158673163, 3069866343, 1335831723, 327428805, 1377504255, 772589811}},
	{"key:1", [12]uint32{2729841284, 1018217594, 1880267265, 2927, 191839212, 4257821445, 2519685833, 2305095589, 1477709737, 2159826137, 3691594071, 2193389018}},
	{"user:1000", [12]uint32{3043211087, 781738503, 3781445233, 8052, 2675185635, 3550362913, 2927313545, 2796551329, 1350311305, 3723237737, 2384768711, 76303748}},
	{"123456789", [12]uint32{3328923845, 2498230565, 2257596867, 19444, 3421780262, 737744598, 600231420, 605325334, 3146166556, 3841726064, 3077965456, 427260662}},
	{"abcdefghijklm", [12]uint32{1838806748, 3518869026, 1924633911, 24052, 3723783842, 1039263394, 965460744, 3851007266, 998463208, 1892570132, 696768699, 3055675487}},
	{"\x80", [12]uint32{3273477671, 2128427405, 37256, 16314, 1069182125, 2046707807, 2046684255, 4210270879, 83079839, 3606367026, 2421514821, 2976898632}},
	{"\xff", [12]uint32{2925896852, 3561969920, 7920, 32512, 4278190080, 2046707744, 2046707310, 4210270944, 4193493326, 44489640, 3679652508, 3784723880}},
	{"ab\xe9", [12]uint32{2087468527, 2356330952, 2088021268, 14409, 944319484, 2488291905, 4206748569, 3160658113, 2981610777, 307729637, 1806632351, 2301080244}},
	{"caf\xc3\xa9", [12]uint32{3650908318, 3833532679, 4129724007, 6317, 2561491637, 2315714289, 3472276361, 3598905713, 1970454601, 3728705621, 3658586143, 3412207021}},
	{"\x00\x01\x02", [12]uint32{1166838264, 4133969849, 1053555, 2132, 139757951, 1812934150, 1812744488, 1236334118, 581859880, 1442291469, 1675604879, 1481477278}},
	{alphabet1500, [12]uint32{1216373412, 4168371834, 3076489167, 13771, 3049997773, 3951357481, 1168412577, 2400919113, 2083388225, 3612922005, 4097222181, 2188117861}},
}

func shortKey(k string) string {
	if len(k) > 20 {
		return k[:17] + "..."
	}
	return k
}

func TestHashValues(t *testing.T) {
	for col, name := range nutcrackerHashes {
		t.Run(name, func(t *testing.T) {
			h, err := Hash(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range hashValues {
				if got := h([]byte(tc.key)); got != tc.want[col] {
					t.Errorf("%s(%q) = %d, want %d", name, shortKey(tc.key), got, tc.want[col])
				}
			}
		})
	}
}

// Without sign extension these five hashes (and hsieh on "ab\xe9") give the
// values of an arm64 nutcracker, where char is unsigned.
func TestHashSignedChar(t *testing.T) {
	unsigned := map[string]uint32{
		"one_at_a_time": 662687451,
		"fnv1_64":       2248259423,
		"fnv1a_64":      2248315231,
		"fnv1_32":       84696479,
		"fnv1a_32":      2232128415,
	}
	for name, bad := range unsigned {
		h, _ := Hash(name)
		if got := h([]byte("\x80")); got == bad {
			t.Errorf("%s(\"\\x80\") = %d, the unsigned-char value", name, got)
		}
	}
	if got := hsieh([]byte("ab\xe9")); got == 91263425 {
		t.Errorf("hsieh(\"ab\\xe9\") = %d, the unsigned-char value", got)
	}
}

// farm has no nutcracker counterpart; these values pin go-farm's
// Fingerprint32 so that a dependency update that changes it is noticed.
func TestHashFarm(t *testing.T) {
	h, err := Hash("farm")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want uint32
	}{
		{"", 3696677242},
		{"foo", 1800414691},
		{"user:1000", 1391042307},
		{alphabet1500, 3460195189},
	} {
		if got := h([]byte(tc.key)); got != tc.want {
			t.Errorf("farm(%q) = %d, want %d", shortKey(tc.key), got, tc.want)
		}
	}
}

func TestHashNames(t *testing.T) {
	names := HashNames()
	want := append(nutcrackerHashes[:], "farm")
	if !slices.Equal(names, want) {
		t.Fatalf("HashNames() = %q, want %q", names, want)
	}
	names[0] = "changed"
	if HashNames()[0] != "one_at_a_time" {
		t.Error("HashNames returned its internal array")
	}
	for _, name := range want {
		if h, err := Hash(name); err != nil || h == nil {
			t.Errorf("Hash(%q) = %v, %v", name, h, err)
		}
	}
	for _, name := range []string{"", "FNV1A_64", "Murmur", "fnv1a64", "crc32 ", "ketama"} {
		if _, err := Hash(name); err == nil {
			t.Errorf("Hash(%q) succeeded, want an error", name)
		}
	}
}

func TestHashAllocs(t *testing.T) {
	key := []byte("user:1000:session")
	for _, name := range HashNames() {
		h, _ := Hash(name)
		if n := testing.AllocsPerRun(100, func() { h(key) }); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}
