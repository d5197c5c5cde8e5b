package launch

import (
	"encoding/binary"
)

// testFirmware describes a synthetic OVMF-shaped image.
type testFirmware struct {
	pages       int       // image size in pages
	sections    []Section // SEV metadata; nil for none
	noMetadata  bool      // leave the metadata entry out
	resetEIP    uint32    // 0: no SEV-ES reset block
	hashesGPA   uint32    // 0: no SEV hashes table entry
	hashesSize  uint32
	fill        byte // image content
	metaVersion uint32
}

// build lays out the image: content, the SEV metadata in the page below
// the last one, and the GUIDed footer table ending 32 bytes before the end.
func (tf testFirmware) build() []byte {
	img := make([]byte, tf.pages*PageSize)
	for i := range img {
		img[i] = tf.fill + byte(i/PageSize)
	}
	var entries [][]byte
	entry := func(g [guidSize]byte, data []byte) {
		e := append([]byte{}, data...)
		e = binary.LittleEndian.AppendUint16(e, uint16(len(data)+entryHeader))
		entries = append(entries, append(e, g[:]...))
	}
	if !tf.noMetadata {
		metaOff := 2 * PageSize // from the end
		m := img[len(img)-metaOff:]
		version := tf.metaVersion
		if version == 0 {
			version = 1
		}
		copy(m, "ASEV")
		binary.LittleEndian.PutUint32(m[4:], uint32(16+12*len(tf.sections)))
		binary.LittleEndian.PutUint32(m[8:], version)
		binary.LittleEndian.PutUint32(m[12:], uint32(len(tf.sections)))
		for i, s := range tf.sections {
			b := m[16+12*i:]
			binary.LittleEndian.PutUint32(b, s.GPA)
			binary.LittleEndian.PutUint32(b[4:], s.Size)
			binary.LittleEndian.PutUint32(b[8:], uint32(s.Type))
		}
		entry(guidSEVMetadata, binary.LittleEndian.AppendUint32(nil, uint32(metaOff)))
	}
	if tf.resetEIP != 0 {
		entry(guidSEVESReset, binary.LittleEndian.AppendUint32(nil, tf.resetEIP))
	}
	if tf.hashesGPA != 0 {
		d := binary.LittleEndian.AppendUint32(nil, tf.hashesGPA)
		entry(guidSEVHashesTable, binary.LittleEndian.AppendUint32(d, tf.hashesSize))
	}
	var table []byte
	for _, e := range entries {
		table = append(table, e...)
	}
	footer := binary.LittleEndian.AppendUint16(nil, uint16(len(table)+entryHeader))
	table = append(append(table, footer...), guidFooterTable[:]...)
	copy(img[len(img)-footerOffset-len(table):], table)
	return img
}

// amdSevLike is shaped like OVMF's AmdSev build: every section type, a
// kernel hashes page holding the hashes table at offset 0x400.
var amdSevLike = testFirmware{
	pages: 8,
	sections: []Section{
		{GPA: 0x800000, Size: 0x9000, Type: SectionSNPSecMemory},
		{GPA: 0x809000, Size: 0x1000, Type: SectionSNPSecrets},
		{GPA: 0x80a000, Size: 0x1000, Type: SectionCPUID},
		{GPA: 0x80b000, Size: 0x1000, Type: SectionSVSMCAA},
		{GPA: 0x80c000, Size: 0x1000, Type: SectionSNPKernelHashes},
		{GPA: 0x80d000, Size: 0x2000, Type: SectionSNPSecMemory},
	},
	resetEIP:   0x80b004,
	hashesGPA:  0x80c400,
	hashesSize: 0x400,
	fill:       0x5a,
}
