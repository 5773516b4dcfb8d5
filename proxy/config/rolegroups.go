package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// The key of a pool whose servers are groups without Sentinel, whose
// master shardproxy finds by asking ROLE of every member (ours; see
// Pool.GroupMembers):
//
//	group_members:   a list of "server member member ..." lines, one per
//	                 server. Every server is then a group: its own
//	                 address is a member, and so is every member listed.
//	                 A member is host:port or, with kubernetes_service, a
//	                 pod of that Service ("shard0-1", on the server's
//	                 port) or every pod of a StatefulSet ("shard0-*":
//	                 the Service's pods named shard0-<ordinal>).

// GroupMember is one member of a group without Sentinel, as written.
type GroupMember struct {
	// Addr is a member's host:port; "" for a pod.
	Addr string
	// Pod is a pod of the pool's kubernetes_service; with StatefulSet set
	// it is the StatefulSet's name and the member is every pod named
	// Pod-<ordinal>.
	Pod         string
	StatefulSet bool
}

// String is the member as a group_members line writes it.
func (m GroupMember) String() string {
	switch {
	case m.Addr != "":
		return m.Addr
	case m.StatefulSet:
		return m.Pod + "-*"
	}
	return m.Pod
}

// HasRoleGroups reports whether the pool's servers are groups whose master
// shardproxy finds with ROLE, without Sentinel: it has group_members.
func (p *Pool) HasRoleGroups() bool { return len(p.GroupMembers) > 0 }

// HasGroups reports whether the pool's servers are groups, of either kind.
func (p *Pool) HasGroups() bool { return p.HasSentinels() || p.HasRoleGroups() }

// addGroupMembers applies one group_members line.
func (b *poolBuilder) addGroupMembers(value string) error {
	fields := strings.Fields(value)
	if len(fields) == 0 {
		return b.errorf("group_members", "empty line: want \"server member ...\"")
	}
	server := fields[0]
	if b.groupLines == nil {
		b.groupLines = map[string][]string{}
	}
	if _, dup := b.groupLines[server]; dup {
		return b.errorf("group_members", "%q: server %q has two lines", value, server)
	}
	b.groupLines[server] = fields[1:]
	return nil
}

// finishRoleGroups checks group_members against the rest of the pool and
// makes Pool.GroupMembers: every server's own address first, then its
// listed members. It runs before servers lose their Pod.
func (b *poolBuilder) finishRoleGroups(pc *Pool) error {
	if b.groupLines == nil {
		return nil
	}
	if pc.HasSentinels() {
		return b.errorf("group_members", "a pool's groups follow either their Sentinels or ROLE: give sentinels (or sentinel_service) or group_members, not both")
	}
	if pc.AutoEjectHosts {
		return b.errorf("auto_eject_hosts", "a pool of groups keeps each group's place instead of ejecting: auto_eject_hosts must be false with group_members")
	}
	byName := map[string]parsedServer{}
	for _, s := range b.servers {
		switch {
		case s.Network != "tcp":
			return fmt.Errorf("pool %q: servers[%d]: %q: a group needs a host:port", pc.Name, s.index, s.Addr)
		case !s.ExplicitName:
			return fmt.Errorf("pool %q: servers[%d]: %q: a group needs a name (host:port:weight name)", pc.Name, s.index, s.Addr)
		}
		byName[s.Name] = s
	}
	for server := range b.groupLines {
		if _, ok := byName[server]; !ok {
			return b.errorf("group_members", "no server is named %q", server)
		}
	}
	owner := map[string]string{} // member -> its group, to refuse one in two
	pc.GroupMembers = make(map[string][]GroupMember, len(b.servers))
	for _, s := range b.servers {
		listed, ok := b.groupLines[s.Name]
		if !ok {
			return b.errorf("group_members", "server %q has no line: every server of a pool with group_members is a group (a line with the name alone makes a group of one)", s.Name)
		}
		own := GroupMember{Addr: s.DialAddr}
		if pc.KubernetesService != "" && s.Pod != "" {
			own = GroupMember{Pod: s.Pod}
		}
		members := []GroupMember{own}
		for _, text := range listed {
			m, err := b.parseGroupMember(pc, s.Name, text)
			if err != nil {
				return err
			}
			if !containsMember(members, m) {
				members = append(members, m)
			}
		}
		for _, m := range members {
			key := m.String()
			if other, taken := owner[key]; taken && other != s.Name {
				return b.errorf("group_members", "%s is a member of both %q and %q", key, other, s.Name)
			}
			owner[key] = s.Name
		}
		pc.GroupMembers[s.Name] = members
	}
	return nil
}

// parseGroupMember reads one member of server's group_members line.
func (b *poolBuilder) parseGroupMember(pc *Pool, server, text string) (GroupMember, error) {
	if host, port, err := net.SplitHostPort(text); err == nil {
		p, perr := parsePort(port)
		if host == "" || perr != nil {
			return GroupMember{}, b.errorf("group_members", "server %q: member %q: want host:port, a pod name or StatefulSet-*", server, text)
		}
		return GroupMember{Addr: net.JoinHostPort(dialHost(host), strconv.Itoa(p))}, nil
	}
	if pc.KubernetesService == "" {
		return GroupMember{}, b.errorf("group_members", "server %q: member %q is not host:port (pod names need kubernetes_service)", server, text)
	}
	name, set := strings.CutSuffix(text, "-*")
	if !isDNSLabel(name) {
		return GroupMember{}, b.errorf("group_members", "server %q: member %q: want host:port, a pod name or StatefulSet-*", server, text)
	}
	return GroupMember{Pod: name, StatefulSet: set}, nil
}

func containsMember(ms []GroupMember, m GroupMember) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}
