package acl

// The errors a refused request gets, in Redis 7.0's words (server.c,
// processCommand), and ACL DRYRUN's replies (acl.c, aclCommand), which
// word the same refusals differently.
const (
	noPermCommandStart = "NOPERM this user has no permissions to run the '"
	noPermCommandEnd   = "' command"
	noPermKey          = "NOPERM this user has no permissions to access one of the keys used as arguments"
	noPermChannel      = "NOPERM this user has no permissions to access one of the channels used as arguments"

	sortByDenied  = "ERR BY option of SORT denied due to insufficient ACL permissions."
	sortGetDenied = "ERR GET option of SORT denied due to insufficient ACL permissions."

	dryRunCommandStart = "This user has no permissions to run the '"
	dryRunCommandEnd   = "' command"
	dryRunKeyStart     = "This user has no permissions to access the '"
	dryRunKeyEnd       = "' key"
	dryRunChannelStart = "This user has no permissions to access the '"
	dryRunChannelEnd   = "' channel"
)

// AppendError appends the error reply a client gets for a refused request,
// as Redis sends it ("-NOPERM ...\r\n"); nothing for an allowed one. It
// allocates nothing when dst has room.
func (v Verdict) AppendError(dst []byte) []byte {
	switch v.Denial {
	case DeniedCommand:
		dst = append(dst, '-')
		dst = append(dst, noPermCommandStart...)
		dst = append(dst, v.Command.Name...)
		dst = append(dst, noPermCommandEnd...)
	case DeniedKey:
		dst = append(dst, '-')
		dst = append(dst, noPermKey...)
	case DeniedChannel:
		dst = append(dst, '-')
		dst = append(dst, noPermChannel...)
	case DeniedSortOption:
		dst = append(dst, '-')
		dst = append(dst, v.sortDenied()...)
	default:
		return dst
	}
	return append(dst, '\r', '\n')
}

// Message is the text of the error a client gets for a refused request,
// without the leading '-' ("NOPERM this user has ..."); "" for an allowed
// one.
func (v Verdict) Message() string {
	switch v.Denial {
	case DeniedCommand:
		return noPermCommandStart + v.Command.Name + noPermCommandEnd
	case DeniedKey:
		return noPermKey
	case DeniedChannel:
		return noPermChannel
	case DeniedSortOption:
		return v.sortDenied()
	}
	return ""
}

// sortDenied is SORT's refusal of its option at v.Arg: BY unless it is GET.
func (v Verdict) sortDenied() string {
	if v.option == 'g' {
		return sortGetDenied
	}
	return sortByDenied
}

// DryRun is what ACL DRYRUN answers for the request args Check decided
// on: "OK", or the refusal naming the command, key or channel. SORT's own
// refusal of an option is not ACL DRYRUN's: it says "OK".
func (v Verdict) DryRun(args [][]byte) string {
	switch v.Denial {
	case DeniedCommand:
		return dryRunCommandStart + v.Command.Name + dryRunCommandEnd
	case DeniedKey:
		return dryRunKeyStart + string(args[v.Arg]) + dryRunKeyEnd
	case DeniedChannel:
		return dryRunChannelStart + string(args[v.Arg]) + dryRunChannelEnd
	}
	return "OK"
}
