package acl

import "strings"

// maskedPassword stands for each password and password hash in Masked:
// neither a password nor its SHA-256 is shown, since an unsalted hash of
// a weak password is as good as the password.
const maskedPassword = "#<redacted>"

// maskRules is the line ACL LIST shows for a user: "user <name>" and its
// rules as written, each rule that adds or removes a password (>, <, #, !)
// replaced by maskedPassword.
func maskRules(name string, rules []string) string {
	var b strings.Builder
	b.WriteString("user ")
	b.WriteString(name)
	for _, op := range rules {
		if op == "" {
			continue
		}
		b.WriteByte(' ')
		if secret(op) {
			b.WriteString(maskedPassword)
		} else {
			b.WriteString(op)
		}
	}
	return b.String()
}

// Masked is the user as ACL LIST shows it: "user <name>" and its rules as
// the file writes them (not Redis' normalised form), with every password
// and password hash shown as "#<redacted>".
func (u *User) Masked() string { return u.masked }

// NamesDefault reports whether the ACL file names the default user; when
// it does not, the default user is Redis' own (on nopass ~* &* +@all).
func (s *Users) NamesDefault() bool { return s.named }

// WithDefaultPassword returns s with its default user replaced by the one
// Redis' requirepass makes, FromPassword's: every key, channel and command,
// and that password ("" leaves it nopass). s itself is unchanged.
func (s *Users) WithDefaultPassword(password string) *Users {
	def := FromPassword(password).def
	users := make([]*User, 0, len(s.byName))
	for _, name := range s.names {
		if name != DefaultUser {
			users = append(users, s.byName[name])
		}
	}
	users = append(users, def)
	out := newUsers(users)
	out.named = s.named
	return out
}
