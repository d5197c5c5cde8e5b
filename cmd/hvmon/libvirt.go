package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"libvirt.org/go/libvirtxml"

	"hvmon.dev/hvmon/hook"
)

// libvirtSubcommands construct the children of "hvmon libvirt" beyond the
// ones in this file. A file that adds one (for example behind a cgo build
// constraint) appends its constructor in an init function:
//
//	func init() { libvirtSubcommands = append(libvirtSubcommands, (*app).libvirtWatchCmd) }
var libvirtSubcommands []func(*app) *cobra.Command

// defaultChannelDir is where the channel-xml socket goes by default: a
// directory libvirt creates for channel sockets, which QEMU may write to.
const defaultChannelDir = "/var/lib/libvirt/qemu/channel/target"

func (a *app) libvirtCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "libvirt",
		Short: "Help with libvirt domains",
	}
	cmd.AddCommand(a.channelXMLCmd())
	for _, c := range libvirtSubcommands {
		cmd.AddCommand(c(a))
	}
	return cmd
}

func (a *app) channelXMLCmd() *cobra.Command {
	var name, path string
	cmd := &cobra.Command{
		Use:   "channel-xml (--name VM | --path SOCKET)",
		Short: "Print the <channel> element that gives a domain hvmon's agent port",
		Long: `Print the <channel> element to add to a domain's <devices> (virsh edit,
or virsh attach-device --config on a stopped domain). It makes a
virtio-serial port named ` + hook.AgentChannel + ` in the guest, where the agent
listens, and a unix socket on the host that QEMU creates (mode bind) and
the daemon connects to.

With --name the socket is ` + defaultChannelDir + `/NAME.` + hook.AgentChannel + `,
in libvirt's channel directory: libvirt then picks the path itself at every
start (domain-ID-NAME/` + hook.AgentChannel + `) and keeps it only in the live
XML, where the libvirt watcher and the hook's started event find it. For a
fixed path (a vm block in the daemon's configuration) give --path, in a
directory where QEMU (libvirt's QEMU user) may create sockets.

The domain needs a virtio-serial controller; libvirt adds one when the
channel is added.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				if name == "" {
					return configErr(errors.New("give --name VM or --path SOCKET"))
				}
				if filepath.Base(name) != name || name == "." || name == ".." {
					return configErr(fmt.Errorf("--name %q: not usable in a file name; give --path", name))
				}
				path = filepath.Join(defaultChannelDir, name+"."+hook.AgentChannel)
			}
			if !filepath.IsAbs(path) {
				return configErr(fmt.Errorf("--path %q must be absolute", path))
			}
			s, err := channelXML(path)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, s)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the domain's `NAME`, for the default socket path")
	cmd.Flags().StringVar(&path, "path", "", "the host `SOCKET` path")
	return cmd
}

// channelXML renders the agent channel for a socket at path.
func channelXML(path string) (string, error) {
	c := libvirtxml.DomainChannel{
		Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind", Path: path}},
		Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: hook.AgentChannel}},
	}
	return c.Marshal()
}
