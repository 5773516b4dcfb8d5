package acl

import "testing"

// Masked shows the rules as written with no password or hash; a default
// user given a password replaces Redis' own without changing the others.
func TestMaskedAndDefaultPassword(t *testing.T) {
	_, err := Parse("users.acl", []byte("user alice on >secret !0000000000000000000000000000000000000000000000000000000000000000 ~a:* +get\n"))
	if err == nil {
		t.Fatal("removing a hash alice does not have parsed")
	}
	users, err := Parse("users.acl", []byte("user alice on >secret <secret #ee79660cb3c15a024733d10eaca3d55e07c1fef3ac417740c05adab34a3c146e ~a:* +get\n"))
	if err != nil {
		t.Fatal(err)
	}
	alice := users.Lookup([]byte("alice"))
	if got, want := alice.Masked(), "user alice on #<redacted> #<redacted> #<redacted> ~a:* +get"; got != want {
		t.Errorf("Masked() = %q, want %q", got, want)
	}
	if users.NamesDefault() || users.AuthRequired() {
		t.Errorf("a file without default: NamesDefault %v, AuthRequired %v", users.NamesDefault(), users.AuthRequired())
	}
	withPass := users.WithDefaultPassword("pw")
	if withPass.Authenticate([]byte("default"), []byte("pw")) == nil || !withPass.AuthRequired() {
		t.Error("WithDefaultPassword: the default user does not take its password")
	}
	if withPass.Lookup([]byte("alice")) != alice || users.AuthRequired() {
		t.Error("WithDefaultPassword changed the other users or the original set")
	}
	named, err := Parse("users.acl", []byte("user default on >x\n"))
	if err != nil || !named.NamesDefault() {
		t.Errorf("a file naming default: NamesDefault false (%v)", err)
	}
}
